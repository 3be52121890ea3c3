//! The dashboard with several meters, on a real database: the overview's one row per
//! customer showing the meter nearest its limit (named, with the number of meters), the meter
//! picker (`m`) that shows one meter on every gauge, and the detail with every meter's gauge,
//! per-day usage and largest groups.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use meterline_store::{NewCustomer, RecordRequest, Store};
use meterline_tui::action::Action;
use meterline_tui::app::{App, Effect, View};
use meterline_tui::data::DataEvent;
use meterline_tui::keys::{self, Mode};
use meterline_tui::theme::Theme;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use tempfile::TempDir;

use crate::render::{app_with_detail, cells_with, now, render, row_of, style_of_word, text};
use crate::support::meter_config;

fn at(day: u32, minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 9, 0, 0).unwrap() + Duration::minutes(minute)
}

fn record(
    store: &mut Store,
    id: &str,
    meter: &str,
    properties: &[(&str, &str)],
    when: DateTime<Utc>,
) {
    let mut request = RecordRequest::new(id, 1, when);
    request.meter = Some(meter.into());
    request.properties = properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let outcome = store.record(&meter_config(), &request, now()).unwrap();
    assert!(outcome.recorded, "{id} {meter} {properties:?}");
}

/// Four customers, each nearest its limit on another meter:
/// Acme (free) on requests (90 / 100, warning), Globex (pro) on tokens (960,000 of 1,000,000
/// over seven models, critical), Umbrella (free) on active users (4 / 4, hard cap), Initech
/// (pro) has only unbilled users and 10 requests.
pub(crate) fn database() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    let config = meter_config();
    for (id, name, plan) in [
        ("acme", "Acme Robotics", "free"),
        ("globex", "Globex Corporation", "pro"),
        ("initech", "Initech", "pro"),
        ("umbrella", "Umbrella", "free"),
    ] {
        let customer = NewCustomer {
            id: id.into(),
            name: Some(name.into()),
            plan_id: plan.into(),
            stripe_customer_id: Some(format!("cus_{id}")),
            billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 3, 5).unwrap()),
        };
        store.add_customer(&config, &customer, now()).unwrap();
    }
    for i in 0..90 {
        record(
            &mut store,
            "acme",
            "requests",
            &[],
            at(5 + (i % 15) as u32, i),
        );
    }
    record(
        &mut store,
        "acme",
        "tokens",
        &[("tokens", "2000"), ("model", "small")],
        at(6, 0),
    );
    record(&mut store, "acme", "users", &[("user", "ann")], at(7, 0));
    let models = [
        ("large", "600000"),
        ("medium", "200000"),
        ("small", "90000"),
        ("embed", "40000"),
        ("vision", "20000"),
        ("audio", "7000"),
        ("tiny", "3000"),
    ];
    for (i, (model, tokens)) in models.iter().enumerate() {
        let day = 6 + i as u32 * 2;
        record(
            &mut store,
            "globex",
            "tokens",
            &[("tokens", tokens), ("model", model)],
            at(day, 0),
        );
    }
    for i in 0..50 {
        record(
            &mut store,
            "globex",
            "requests",
            &[],
            at(5 + (i % 16) as u32, i),
        );
    }
    for user in ["ann", "bob", "cy"] {
        record(&mut store, "globex", "users", &[("user", user)], at(10, 0));
    }
    for i in 0..10 {
        record(&mut store, "initech", "requests", &[], at(8, i));
    }
    for user in ["ann", "bob", "cy", "dee", "eve"] {
        record(&mut store, "initech", "users", &[("user", user)], at(12, 0));
    }
    for (i, user) in ["u1", "u2", "u3", "u4"].iter().enumerate() {
        record(
            &mut store,
            "umbrella",
            "users",
            &[("user", user)],
            at(9 + i as u32, 0),
        );
    }
    record(
        &mut store,
        "umbrella",
        "tokens",
        &[("tokens", "500"), ("model", "small")],
        at(9, 0),
    );
    (dir, store)
}

pub(crate) fn meters_app(store: &Store, theme: Theme) -> App {
    let config = meter_config();
    let dashboard = store.dashboard(&config, now()).unwrap();
    App::new(
        config,
        "m.db".into(),
        "plans.toml".into(),
        theme,
        now(),
        dashboard,
    )
}

fn line_of(buffer: &ratatui::buffer::Buffer, needle: &str) -> String {
    let y = row_of(buffer, needle);
    text(buffer).lines().nth(y as usize).unwrap().to_string()
}

fn k(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Press keys as the loop does: resolve in the current mode, then update.
fn press(app: &mut App, keys: &[KeyEvent]) -> Vec<Effect> {
    keys.iter()
        .filter_map(|k| keys::resolve(app.mode(), k).and_then(|a| app.update(a)))
        .collect()
}

/// Which meter each customer's row shows, by customer id.
fn shown(app: &App) -> Vec<(String, String, i64)> {
    let mut rows: Vec<_> = app
        .rows()
        .iter()
        .map(|r| {
            let meter = app.config.meters[r.shown].id.clone();
            (r.customer_id.clone(), meter, r.used)
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn the_overview_shows_each_customers_meter_nearest_its_limit_named_with_the_count() {
    let (_dir, store) = database();
    let mut app = meters_app(&store, Theme::COLOR);
    let buffer = render(&mut app, 120, 20);
    let shown = text(&buffer);
    assert!(shown.contains("· meter nearest its limit"), "{shown}");
    for (name, meter, figures, word, colour) in [
        (
            "Acme Robotics",
            "API requests · 3 meters",
            "90 / 100",
            "▲ warning",
            Color::Yellow,
        ),
        (
            "Globex",
            "Tokens · 3 meters",
            "960,000 / 1,000,000",
            "◆ critical",
            Color::Red,
        ),
        (
            "Umbrella",
            "Active users · 3 meters",
            "4 / 4",
            "■ HARD CAP",
            Color::Magenta,
        ),
        (
            "Initech",
            "API requests · 3 meters",
            "10 / 10,000",
            "✓ ok",
            Color::Green,
        ),
    ] {
        let line = line_of(&buffer, name);
        assert!(line.contains(meter), "{line}");
        assert!(line.contains(figures), "{line}");
        assert!(line.contains(word), "{line}");
        let y = row_of(&buffer, name);
        let filled = cells_with(&buffer, y, "█");
        assert!(filled.iter().all(|c| c.fg == colour), "{name}: {filled:?}");
        let label = style_of_word(&buffer, y, word);
        let expected = if colour == Color::Magenta {
            Color::White
        } else {
            colour
        };
        assert_eq!(label.fg, expected, "{name}");
    }
    // Risk order follows the meter shown: the hard cap first.
    let order: Vec<usize> = ["Umbrella", "Globex", "Acme", "Initech"]
        .iter()
        .map(|n| usize::from(row_of(&buffer, n)))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{shown}");
    // The header counts each customer once, at its shown meter's level.
    assert_eq!(app.summary.levels, [1, 1, 1, 1]);
    // The footer names the picker's key.
    assert!(shown.lines().last().unwrap().contains("m meter"), "{shown}");
    insta::assert_snapshot!("overview_three_meters_120x20", shown);
}

#[test]
fn a_narrow_overview_names_the_meter_alone() {
    let (_dir, store) = database();
    let mut app = meters_app(&store, Theme::COLOR);
    let buffer = render(&mut app, 80, 20);
    let line = line_of(&buffer, "Globex");
    assert!(
        line.contains("Tokens") && !line.contains("3 meters"),
        "{line}"
    );
    insta::assert_snapshot!("overview_three_meters_80x20", text(&buffer));
}

#[test]
fn the_picker_lists_the_meters_and_shows_the_chosen_one_on_every_gauge() {
    let (_dir, store) = database();
    let mut app = meters_app(&store, Theme::COLOR);
    press(&mut app, &[k('m')]);
    assert_eq!(app.meter_picker, Some(0));
    let buffer = render(&mut app, 120, 24);
    let screen = text(&buffer);
    for entry in [
        "▸ nearest its limit",
        "API requests",
        "count · requests",
        "Tokens",
        "sum · tokens · by model",
        "Active users",
        "unique_count · users",
        "✓ shown",
    ] {
        assert!(screen.contains(entry), "{entry}\n{screen}");
    }
    assert!(
        screen
            .lines()
            .last()
            .unwrap()
            .contains("Enter show on every gauge"),
        "{screen}"
    );
    insta::assert_snapshot!("meter_picker_120x24", screen);

    // Down twice: Tokens; Enter shows it on every row.
    press(
        &mut app,
        &[
            code(KeyCode::Down),
            code(KeyCode::Down),
            code(KeyCode::Enter),
        ],
    );
    assert_eq!(app.meter_picker, None);
    assert_eq!(app.meter.as_deref(), Some("tokens"));
    let buffer = render(&mut app, 120, 20);
    let screen = text(&buffer);
    assert!(screen.contains("· meter Tokens "), "{screen}");
    assert!(!screen.contains("API requests · 3"), "{screen}");
    assert!(line_of(&buffer, "Acme Robotics").contains("2,000 / 10,000"));
    assert!(line_of(&buffer, "Umbrella").contains("500 / 10,000"));
    // Initech has no tokens: its gauge is empty, its level ok.
    assert!(line_of(&buffer, "Initech").contains("0 / 1,000,000"));
    insta::assert_snapshot!("overview_tokens_picked_120x20", screen);
}

#[test]
fn m_opens_the_picker_and_esc_goes_back_to_the_nearest_meter() {
    let (_dir, store) = database();
    let mut app = meters_app(&store, Theme::COLOR);
    let nearest = shown(&app);
    assert_eq!(
        nearest,
        [
            ("acme".to_string(), "requests".to_string(), 90),
            ("globex".to_string(), "tokens".to_string(), 960_000),
            ("initech".to_string(), "requests".to_string(), 10),
            ("umbrella".to_string(), "users".to_string(), 4),
        ]
    );
    // `m` opens, nothing is asked of the loop (no I/O); ↑ stops at the first entry.
    assert!(press(&mut app, &[k('m'), code(KeyCode::Up)]).is_empty());
    assert_eq!(app.meter_picker, Some(0));
    // `G` goes to the last meter, Enter picks it.
    press(&mut app, &[k('G'), code(KeyCode::Enter)]);
    assert_eq!(app.meter.as_deref(), Some("users"));
    assert!(shown(&app).iter().all(|(_, meter, _)| meter == "users"));
    // Risk on users: Umbrella at its limit first (Initech's users are unbilled: last).
    assert_eq!(app.selected_row().unwrap().customer_id, "umbrella");
    // Reopened on the meter shown; Esc and `m` close it, changing nothing.
    press(&mut app, &[k('m')]);
    assert_eq!(app.meter_picker, Some(3));
    press(&mut app, &[code(KeyCode::Up), code(KeyCode::Esc)]);
    assert_eq!(
        (app.meter_picker, app.meter.as_deref()),
        (None, Some("users"))
    );
    press(&mut app, &[k('m'), k('m')]);
    assert_eq!(
        (app.meter_picker, app.meter.as_deref()),
        (None, Some("users"))
    );
    // Esc on the overview: the filter first, then back to the nearest its limit.
    press(
        &mut app,
        &[k('/'), k('a'), code(KeyCode::Enter), code(KeyCode::Esc)],
    );
    assert_eq!(
        (app.filter.as_str(), app.meter.as_deref()),
        ("", Some("users"))
    );
    press(&mut app, &[code(KeyCode::Esc)]);
    assert_eq!(app.meter, None);
    assert_eq!(shown(&app), nearest);
    // Choosing "nearest its limit" in the picker does the same.
    press(
        &mut app,
        &[k('m'), code(KeyCode::Down), code(KeyCode::Enter)],
    );
    assert_eq!(app.meter.as_deref(), Some("requests"));
    press(&mut app, &[k('m'), k('g'), code(KeyCode::Enter)]);
    assert_eq!((app.meter.as_deref(), shown(&app)), (None, nearest));
    // Only on the overview without a detail open.
    press(&mut app, &[code(KeyCode::Enter), k('m')]);
    assert_eq!(app.meter_picker, None);
    press(&mut app, &[code(KeyCode::Esc), k('3'), k('m')]);
    assert_eq!((app.view, app.meter_picker), (View::Plans, None));
}

#[test]
fn a_picked_meter_stays_picked_through_refreshes_and_reloads() {
    let (dir, mut store) = database();
    let mut app = meters_app(&store, Theme::COLOR);
    let reader = Store::open(&dir.path().join("m.db")).unwrap();
    let config = meter_config();
    let marks = reader.dashboard(&config, now()).unwrap().marks;
    press(
        &mut app,
        &[
            k('m'),
            code(KeyCode::Down),
            code(KeyCode::Down),
            code(KeyCode::Enter),
        ],
    );
    // Another process records tokens for Acme.
    record(
        &mut store,
        "acme",
        "tokens",
        &[("tokens", "7000"), ("model", "large")],
        at(19, 0),
    );
    let meterline_store::Refresh::Partial { usage, backlog, .. } =
        reader.dashboard_refresh(&config, marks, now()).unwrap()
    else {
        panic!("expected a partial refresh");
    };
    app.apply(DataEvent::Changed {
        usage,
        backlog,
        credits: None,
    });
    let acme = app.rows().iter().find(|r| r.customer_id == "acme").unwrap();
    assert_eq!(
        (app.config.meters[acme.shown].id.as_str(), acme.used),
        ("tokens", 9000)
    );
    // A full reload keeps the pick too.
    app.apply(DataEvent::Loaded(reader.dashboard(&config, now()).unwrap()));
    assert!(shown(&app).iter().all(|(_, meter, _)| meter == "tokens"));
    // Plans without that meter: back to the nearest.
    let mut fewer = meter_config();
    fewer.meters.retain(|m| m.id != "tokens");
    app.apply(DataEvent::Plans(Box::new(fewer)));
    assert_eq!(app.meter, None);
}

#[test]
fn with_one_meter_m_does_nothing_and_the_overview_has_no_meter_column() {
    let mut app = App::new(
        crate::support::config(),
        "test.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now(),
        meterline_store::Dashboard::default(),
    );
    assert!(press(&mut app, &[k('m')]).is_empty());
    assert_eq!(app.meter_picker, None);
    let screen = text(&render(&mut app, 120, 20));
    assert!(
        !screen.contains("Meter") && !screen.contains("m meter"),
        "{screen}"
    );
}

#[test]
fn m_is_bound_in_the_keymap_and_its_help() {
    assert_eq!(
        keys::resolve(Mode::Normal, &k('m')),
        Some(Action::PickMeter)
    );
    assert_eq!(
        keys::resolve(Mode::Filter, &k('m')),
        Some(Action::FilterChar('m'))
    );
    assert_eq!(keys::resolve(Mode::Confirm, &k('m')), None);
    assert!(
        keys::help(Mode::Normal)
            .any(|(keys, what)| keys == "m" && what == "choose the meter the gauges show")
    );
}

#[test]
fn the_detail_shows_every_meter_with_its_gauge_days_and_top_groups() {
    let (_dir, store) = database();
    let mut app = meters_app(&store, Theme::COLOR);
    app_with_detail(&mut app, &store, "globex").unwrap();
    let buffer = render(&mut app, 120, 40);
    let screen = text(&buffer);
    for expected in [
        "Globex Corporation · plan pro · period 2026-11-05 → 2026-12-05 · 15 days left · 3 meters",
        "API requests · count",
        "50 / 10,000 · 0 % · ✓ ok",
        "Tokens · sum · by model",
        "960,000 / 1,000,000 · 96 % · ◆ critical",
        "overage 0 × $0.00002 = $0.00",
        "Active users · unique_count",
        "3 · unlimited · ✓ ok",
        "not billed on plan pro: never capped",
        "distinct per day Nov 5 → Nov 20 · top 3",
        "+2 more",
        "Reporting   Stripe cus_globex",
    ] {
        assert!(screen.contains(expected), "{expected}\n{screen}");
    }
    // The top five groups, largest first; the smallest two are counted, not listed.
    let large = row_of(&buffer, "large");
    let vision = row_of(&buffer, "vision");
    assert!(large < vision && !screen.contains("audio") && !screen.contains("tiny"));
    // The gauges are coloured by level, the level in words beside.
    let tokens = row_of(&buffer, "960,000 / 1,000,000") - 1;
    assert!(
        cells_with(&buffer, tokens, "█")
            .iter()
            .all(|c| c.fg == Color::Red)
    );
    let word = style_of_word(&buffer, tokens + 1, "◆ critical");
    assert_eq!(word.fg, Color::Red);
    insta::assert_snapshot!("detail_three_meters_120x40", screen);
}

#[test]
fn a_taller_detail_lists_the_recent_events_with_their_meters() {
    let (_dir, store) = database();
    let mut app = meters_app(&store, Theme::COLOR);
    app_with_detail(&mut app, &store, "globex").unwrap();
    // At 40 rows the three meters' boxes take the height: no room for events.
    assert!(!text(&render(&mut app, 120, 40)).contains("Recent events"));
    let screen = text(&render(&mut app, 120, 56));
    assert!(screen.contains("Recent events"), "{screen}");
    // Newest first, each with what it added to its meter and the meter's id.
    let requests = line_of(&render(&mut app, 120, 56), "2026-11-20 09:47");
    assert!(requests.contains("×1  requests  … pending"), "{requests}");
    let tokens = line_of(&render(&mut app, 120, 56), "2026-11-18 09:00");
    assert!(tokens.contains("×3,000  tokens"), "{tokens}");
    // The meters keep their full boxes above: the five largest groups still show.
    assert!(screen.contains("+2 more"), "{screen}");
}

/// The Plans view with `[[meters]]`: each plan's terms a line per meter with the meter's
/// Stripe event (it once showed every plan unlimited on `meterline_usage`), and the recent
/// alerts by customer name with the meter crossed (they once showed ids and no meter).
#[test]
fn the_plans_view_shows_terms_per_meter_and_alerts_by_name_and_meter() {
    let (_dir, store) = database();
    let mut app = meters_app(&store, Theme::MONOCHROME);
    app.apply(DataEvent::Alerts(meterline_tui::data::AlertsView {
        counts: store.alert_counts().unwrap(),
        recent: store
            .recent_alerts(meterline_tui::data::ALERTS_LIMIT)
            .unwrap(),
    }));
    app.update(Action::ShowPlans);
    let buffer = render(&mut app, 120, 30);
    let shown = text(&buffer);
    assert!(!shown.contains("unlimited"), "{shown}");
    assert!(!shown.contains("meterline_usage"), "{shown}");
    let free_tokens = line_of(&buffer, "Free");
    assert!(free_tokens.contains("requests"), "{shown}");
    assert!(free_tokens.contains("100"), "{shown}");
    let umbrella = line_of(&buffer, "Umbrella ");
    assert!(
        umbrella.contains("users") && umbrella.contains("hard_cap"),
        "{shown}"
    );
    insta::assert_snapshot!("plans_view_three_meters_120x30", shown);
}

/// A count of one takes the singular: "1 day left", never "1 days left".
#[test]
fn the_detail_says_1_day_left_on_the_last_day() {
    let (_dir, store) = database();
    let config = meter_config();
    let last_day = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
    let dashboard = store.dashboard(&config, now()).unwrap();
    let mut app = App::new(
        config,
        "m.db".into(),
        "plans.toml".into(),
        Theme::MONOCHROME,
        last_day,
        dashboard,
    );
    app_with_detail(&mut app, &store, "globex").unwrap();
    let screen = text(&render(&mut app, 120, 40));
    assert!(
        screen.contains("period 2026-11-05 → 2026-12-05 · 1 day left · 3 meters"),
        "{screen}"
    );
}

/// An event's detail gives its meter and what it added, as the Events list's Units column
/// does (the detail showed the event's quantity: 1 for 1,200 tokens).
#[test]
fn an_events_detail_shows_its_meter_and_amount_as_the_list_does() {
    let mut app = meters_app(&database().1, Theme::MONOCHROME);
    app.update(Action::ShowEvents);
    app.apply(DataEvent::Events(vec![meterline_store::EventRow {
        id: 7,
        customer_id: "acme".into(),
        customer_name: "Acme Robotics".into(),
        user_id: None,
        quantity: 1,
        meter_id: "tokens".into(),
        amount: 1_200,
        event_type: None,
        meters: vec![("tokens".into(), 1_200)],
        occurred_at: "2026-11-20T10:00:00Z".into(),
        attempts: 0,
        error: None,
        state: meterline_store::StripeState::Pending,
    }]));
    let list = text(&render(&mut app, 120, 20));
    assert!(
        line_of(&render(&mut app, 120, 20), "Acme Robotics").contains("1,200"),
        "{list}"
    );
    app.update(Action::Open);
    let shown = text(&render(&mut app, 120, 30));
    assert!(shown.contains("Meter       tokens"), "{shown}");
    assert!(shown.contains("Amount      1,200"), "{shown}");
    assert!(!shown.contains("Units       1"), "{shown}");
}

/// A meter whose counters were counted by another aggregation than plans.toml's now: the
/// Plans view says so (its events are refused until the two agree) and points at doctor.
#[test]
fn the_plans_view_says_when_a_meter_was_counted_another_way() {
    let (_dir, store) = database();
    let mut config = meter_config();
    let tokens = config.meters.iter_mut().find(|m| m.id == "tokens").unwrap();
    tokens.aggregation = meterline_core::config::Aggregation::Max;
    let dashboard = store.dashboard(&config, now()).unwrap();
    let mut app = App::new(
        config,
        "m.db".into(),
        "plans.toml".into(),
        Theme::MONOCHROME,
        now(),
        dashboard,
    );
    app.update(Action::ShowPlans);
    let buffer = render(&mut app, 160, 30);
    let note = line_of(&buffer, "from plans.toml");
    assert!(
        note.contains("meter \"tokens\" was counted as sum") && note.contains("meterline doctor"),
        "{}",
        text(&buffer)
    );
    // The same database under the plans it was counted by says nothing.
    let mut app = meters_app(&store, Theme::MONOCHROME);
    app.update(Action::ShowPlans);
    assert!(!text(&render(&mut app, 160, 30)).contains("counted as"));
}
