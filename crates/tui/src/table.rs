//! The customer table's engine: which rows pass the filter (name, id or plan; archived customers
//! only while shown) and the order they are listed in (the sort key, then the customer id).
//! After a refresh only the rows that changed move, merged back in one linear pass. No I/O and
//! no drawing: `App` owns one and reorders it when the rows, the filter or the sort change.

use std::cmp::Ordering;
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::store::DashboardRow;

/// Orders of the customer table; `o` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Highest ratio first: most at risk.
    Risk,
    Name,
    Plan,
    Used,
    Unreported,
    DaysLeft,
    /// The fullest rolling window first (only offered when plans.toml has windows).
    Window,
}

impl SortKey {
    const ALL: [SortKey; 7] = [
        SortKey::Risk,
        SortKey::Name,
        SortKey::Plan,
        SortKey::Used,
        SortKey::Unreported,
        SortKey::DaysLeft,
        SortKey::Window,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            SortKey::Risk => "risk",
            SortKey::Name => "name",
            SortKey::Plan => "plan",
            SortKey::Used => "used",
            SortKey::Unreported => "unreported",
            SortKey::DaysLeft => "days left",
            SortKey::Window => "tightest window",
        }
    }

    /// The next order; the window's only when plans.toml has `windows`.
    pub(crate) fn next(self, windows: bool) -> SortKey {
        let i = SortKey::ALL.iter().position(|k| *k == self).unwrap_or(0);
        let next = SortKey::ALL[(i + 1) % SortKey::ALL.len()];
        if next == SortKey::Window && !windows {
            return next.next(windows);
        }
        next
    }
}

/// What the table is ordered and filtered by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Order<'a> {
    pub sort: SortKey,
    pub reverse: bool,
    pub filter: &'a str,
    pub show_archived: bool,
    /// For days left.
    pub now: DateTime<Utc>,
}

/// The rows and the ones listed, in order.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<DashboardRow>,
    by_id: HashMap<String, usize>,
    /// Each row's place in customer id order: the tie-break of every sort, as an integer.
    id_rank: Vec<u32>,
    /// Indices into `rows` after filter and sort: what the table shows, in order.
    visible: Vec<usize>,
    /// The filter `visible` was built with; None after the rows were replaced.
    visible_filter: Option<String>,
}

impl Table {
    /// Every row, listed or not, in the order they were loaded.
    pub(crate) fn rows(&self) -> &[DashboardRow] {
        &self.rows
    }

    /// The row at `index` (an index into `rows`, as `index_of` gives).
    pub(crate) fn row_mut(&mut self, index: usize) -> &mut DashboardRow {
        &mut self.rows[index]
    }

    /// Every row, to update in place; the next `reorder` puts them in order.
    pub(crate) fn rows_mut(&mut self) -> &mut [DashboardRow] {
        &mut self.rows
    }

    /// Where the customer's row is in `rows`.
    pub(crate) fn index_of(&self, customer_id: &str) -> Option<usize> {
        self.by_id.get(customer_id).copied()
    }

    /// Replace the rows; the next `reorder` filters and sorts them anew.
    pub(crate) fn set_rows(&mut self, rows: Vec<DashboardRow>) {
        self.by_id = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.customer_id.clone(), i))
            .collect();
        let mut by_id_order: Vec<usize> = (0..rows.len()).collect();
        by_id_order.sort_unstable_by(|&a, &b| rows[a].customer_id.cmp(&rows[b].customer_id));
        self.id_rank = vec![0; rows.len()];
        for (rank, &i) in by_id_order.iter().enumerate() {
            self.id_rank[i] = rank as u32;
        }
        self.rows = rows;
        self.refilter();
    }

    /// Filter again at the next `reorder` (what passes changed, e.g. archived rows shown).
    pub(crate) fn refilter(&mut self) {
        self.visible_filter = None;
    }

    /// How many rows are listed.
    pub(crate) fn len(&self) -> usize {
        self.visible.len()
    }

    /// The listed row at `position`.
    pub(crate) fn get(&self, position: usize) -> Option<&DashboardRow> {
        self.visible.get(position).map(|&i| &self.rows[i])
    }

    /// The listed rows from `start`, at most `count`.
    pub(crate) fn listed(&self, start: usize, count: usize) -> impl Iterator<Item = &DashboardRow> {
        self.visible
            .iter()
            .skip(start)
            .take(count)
            .map(|&i| &self.rows[i])
    }

    /// Put the table in order again. `changed`: the only rows whose sort keys changed (after
    /// a refresh); with the same filter only they move, merged back in one linear pass.
    /// `selected` is the listed position of the selected row; the answer is where that
    /// customer is listed now (or `selected` again when it is no longer listed).
    pub(crate) fn reorder(
        &mut self,
        order: &Order,
        changed: Option<&[usize]>,
        selected: usize,
    ) -> usize {
        let keep = self.get(selected).map(|r| r.customer_id.clone());
        let mut visible = std::mem::take(&mut self.visible);
        let compare = |a: &usize, b: &usize| self.compare(order, *a, *b);
        if self.visible_filter.as_deref() != Some(order.filter) {
            let needle = Needle::new(order.filter);
            visible = (0..self.rows.len())
                .filter(|&i| {
                    let row = &self.rows[i];
                    (order.show_archived || !row.archived) && needle.matches(row)
                })
                .collect();
            visible.sort_unstable_by(compare);
        } else if let Some(changed) = changed {
            let mut is_changed = vec![false; self.rows.len()];
            for &i in changed {
                is_changed[i] = true;
            }
            let mut moved: Vec<usize> =
                visible.iter().copied().filter(|&i| is_changed[i]).collect();
            visible.retain(|&i| !is_changed[i]);
            moved.sort_unstable_by(compare);
            visible = merge(visible, moved, compare);
        } else {
            // Starting from the current order: the stable merge sort finds its runs.
            visible.sort_by(compare);
        }
        self.visible_filter = Some(order.filter.to_string());
        let kept_row = keep.and_then(|id| self.index_of(&id));
        let selected = kept_row
            .and_then(|row| visible.iter().position(|&i| i == row))
            .unwrap_or(selected);
        self.visible = visible;
        selected
    }

    /// The table order of rows `a` and `b`: the sort key, then the customer id.
    fn compare(&self, order: &Order, a: usize, b: usize) -> Ordering {
        let ordering = compare(order.sort, &self.rows[a], &self.rows[b], order.now)
            .then_with(|| self.id_rank[a].cmp(&self.id_rank[b]));
        if order.reverse {
            ordering.reverse()
        } else {
            ordering
        }
    }
}

/// Two sorted lists as one sorted list.
fn merge(
    left: Vec<usize>,
    right: Vec<usize>,
    order: impl Fn(&usize, &usize) -> Ordering,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
    while let (Some(a), Some(b)) = (l.peek(), r.peek()) {
        if order(b, a) == Ordering::Less {
            out.push(*b);
            r.next();
        } else {
            out.push(*a);
            l.next();
        }
    }
    out.extend(l);
    out.extend(r);
    out
}

fn compare(sort: SortKey, a: &DashboardRow, b: &DashboardRow, now: DateTime<Utc>) -> Ordering {
    let ratio = |r: &DashboardRow| r.ratio().unwrap_or(-1.0);
    let window = |r: &DashboardRow| r.window.as_ref().map_or(-1.0, |w| w.ratio());
    match sort {
        SortKey::Risk => ratio(b).total_cmp(&ratio(a)),
        SortKey::Name => a.name.cmp(&b.name),
        SortKey::Plan => a
            .plan_id
            .cmp(&b.plan_id)
            .then_with(|| ratio(b).total_cmp(&ratio(a))),
        SortKey::Used => b.used.cmp(&a.used),
        SortKey::Unreported => b.backlog.unreported.cmp(&a.backlog.unreported),
        SortKey::DaysLeft => a.period.days_left(now).cmp(&b.period.days_left(now)),
        SortKey::Window => window(b).total_cmp(&window(a)),
    }
}

/// A case-insensitive filter over name, id and plan.
struct Needle {
    lower: String,
}

impl Needle {
    fn new(filter: &str) -> Needle {
        Needle {
            lower: filter.trim().to_lowercase(),
        }
    }

    fn matches(&self, row: &DashboardRow) -> bool {
        self.lower.is_empty()
            || [&row.name, &row.customer_id, &row.plan_id]
                .iter()
                .any(|field| contains_ignore_case(field, &self.lower))
    }
}

/// Substring test without allocating for ASCII text (the common case at 100k rows).
fn contains_ignore_case(haystack: &str, lower_needle: &str) -> bool {
    if haystack.is_ascii() && lower_needle.is_ascii() {
        let (h, n) = (haystack.as_bytes(), lower_needle.as_bytes());
        return n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    haystack.to_lowercase().contains(lower_needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::Period;
    use crate::store::Backlog;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000, 0).unwrap()
    }

    fn row(id: &str, plan: &str, used: i64, limit: Option<i64>) -> DashboardRow {
        DashboardRow {
            customer_id: id.into(),
            name: id.to_uppercase(),
            plan_id: plan.into(),
            limit,
            mapped: true,
            period: Period {
                start: now(),
                end: now() + chrono::Duration::days(30),
            },
            used,
            backlog: Backlog::default(),
            archived: false,
            meters: Vec::new(),
            shown: 0,
            credits: None,
            window: None,
        }
    }

    fn order(sort: SortKey, filter: &str) -> Order<'_> {
        Order {
            sort,
            reverse: false,
            filter,
            show_archived: false,
            now: now(),
        }
    }

    fn listed(table: &Table) -> Vec<&str> {
        table
            .listed(0, usize::MAX)
            .map(|r| r.customer_id.as_str())
            .collect()
    }

    fn table(rows: Vec<DashboardRow>) -> Table {
        let mut table = Table::default();
        table.set_rows(rows);
        table.reorder(&order(SortKey::Risk, ""), None, 0);
        table
    }

    #[test]
    fn risk_first_then_the_customer_id_breaks_ties() {
        let table = table(vec![
            row("delta", "free", 10, Some(100)),
            row("bravo", "free", 90, Some(100)),
            row("alpha", "free", 10, Some(100)),
            row("zulu", "pro", 5, None),
        ]);
        assert_eq!(listed(&table), ["bravo", "alpha", "delta", "zulu"]);
    }

    #[test]
    fn reverse_turns_the_whole_order_round() {
        let mut table = table(vec![
            row("alpha", "free", 10, Some(100)),
            row("bravo", "free", 90, Some(100)),
        ]);
        let reversed = Order {
            reverse: true,
            ..order(SortKey::Risk, "")
        };
        table.reorder(&reversed, None, 0);
        assert_eq!(listed(&table), ["alpha", "bravo"]);
    }

    #[test]
    fn the_filter_matches_name_id_and_plan_ignoring_case_and_archived_rows_only_when_shown() {
        let mut archived = row("echo", "starter", 1, Some(100));
        archived.archived = true;
        let mut table = table(vec![
            row("alpha", "free", 1, Some(100)),
            row("bravo", "starter", 2, Some(100)),
            archived,
        ]);
        table.reorder(&order(SortKey::Name, "START"), None, 0);
        assert_eq!(listed(&table), ["bravo"]);
        table.reorder(&order(SortKey::Name, " alp "), None, 0);
        assert_eq!(listed(&table), ["alpha"]);
        table.refilter();
        let shown = Order {
            show_archived: true,
            ..order(SortKey::Name, "starter")
        };
        table.reorder(&shown, None, 0);
        assert_eq!(listed(&table), ["bravo", "echo"]);
    }

    #[test]
    fn moving_only_the_changed_rows_gives_the_full_sort() {
        let rows: Vec<DashboardRow> = (0..40)
            .map(|i| row(&format!("c{i:02}"), "free", (i * 7) % 13, Some(20)))
            .collect();
        let mut incremental = table(rows.clone());
        let mut changed = Vec::new();
        for i in [3, 17, 18, 39] {
            incremental.row_mut(i).used = 19 - i as i64 % 5;
            changed.push(i);
        }
        incremental.reorder(&order(SortKey::Risk, ""), Some(&changed), 0);
        let mut fresh_rows = incremental.rows().to_vec();
        fresh_rows.reverse();
        assert_eq!(listed(&incremental), listed(&table(fresh_rows)));
    }

    #[test]
    fn the_selected_customer_stays_selected() {
        let mut table = table(vec![
            row("alpha", "free", 10, Some(100)),
            row("bravo", "free", 50, Some(100)),
            row("charlie", "free", 90, Some(100)),
        ]);
        assert_eq!(listed(&table), ["charlie", "bravo", "alpha"]);
        let selected = table.reorder(&order(SortKey::Name, ""), None, 0);
        assert_eq!(table.get(selected).unwrap().customer_id, "charlie");
        // Filtered out: the position stays.
        assert_eq!(table.reorder(&order(SortKey::Name, "alpha"), None, 2), 2);
    }

    #[test]
    fn merge_keeps_both_orders_and_prefers_the_left_on_ties() {
        let merged = merge(vec![1, 3, 5], vec![2, 3, 6], |a, b| a.cmp(b));
        assert_eq!(merged, [1, 2, 3, 3, 5, 6]);
        let by_parity = merge(vec![1, 3], vec![5], |a, b| (a % 2).cmp(&(b % 2)));
        assert_eq!(by_parity, [1, 3, 5]);
    }

    #[test]
    fn case_is_ignored_for_ascii_and_beyond() {
        assert!(contains_ignore_case("Acme Robotics", "robot"));
        assert!(!contains_ignore_case("Acme", "acmes"));
        assert!(contains_ignore_case("ÉCOLE Öffentlich", "öff"));
        // The empty filter is the needle's own case: every row passes.
        assert!(Needle::new("  ").matches(&row("alpha", "free", 1, None)));
    }

    #[test]
    fn sort_keys_cycle_through_all_and_the_window_only_with_windows() {
        let mut key = SortKey::Risk;
        for expected in &SortKey::ALL[1..] {
            key = key.next(true);
            assert_eq!(key, *expected);
        }
        assert_eq!(key.next(true), SortKey::Risk);
        assert_eq!(SortKey::DaysLeft.next(false), SortKey::Risk);
    }

    fn windowed(id: &str, used: i64, limit: i64) -> DashboardRow {
        let mut r = row(id, "max", 1, Some(100));
        r.window = Some(crate::store::TightestWindow {
            meter: "tokens".into(),
            window: "5h".into(),
            used,
            limit,
            level: crate::billing::WarningLevel::Ok,
            moves_at: None,
        });
        r
    }

    #[test]
    fn the_tightest_window_sorts_fullest_first_and_customers_without_windows_last() {
        let mut table = table(vec![
            row("alpha", "free", 90, Some(100)),
            windowed("bravo", 40, 100),
            windowed("charlie", 1_200_000, 1_000_000),
            windowed("delta", 97, 100),
        ]);
        table.reorder(&order(SortKey::Window, ""), None, 0);
        assert_eq!(listed(&table), ["charlie", "delta", "bravo", "alpha"]);
    }
}
