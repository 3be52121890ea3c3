//! The dashboard on events of a type and prices per model (tests/fixtures/plans/ai_priced.toml),
//! on a real database: the detail lists each group's units past `included` and their money,
//! the Events view is one line per event with its type and every meter it fed, and the Plans
//! view lists each meter's rates under its terms.

use chrono::NaiveDate;
use meterline_store::{NewCustomer, RecordRequest, Store};
use meterline_tui::action::Action;
use meterline_tui::app::App;
use meterline_tui::data::DataEvent;
use meterline_tui::theme::Theme;
use tempfile::TempDir;

use crate::render::{app_with_detail, now, render, row_of, text};
use crate::support::priced_config;

/// Acme (pro) with four `completion` events: 2,400 tokens, 1,400 past the 1,000 included
/// (large's 300 past at 0.01, medium's 100 at 0.002, tiny's 1,000 at 0.001; small's 800
/// inside): $4.20.
fn database() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    let config = priced_config();
    let customer = NewCustomer {
        id: "acme".into(),
        name: Some("Acme Robotics".into()),
        plan_id: "pro".into(),
        stripe_customer_id: Some("cus_acme".into()),
        billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 5).unwrap()),
    };
    store.add_customer(&config, &customer, now()).unwrap();
    for (minute, (tokens, model, user)) in [
        (800, "small", "u1"),
        (500, "large", "u2"),
        (100, "medium", "u1"),
        (1000, "tiny", "u3"),
    ]
    .into_iter()
    .enumerate()
    {
        let at = now() - chrono::Duration::hours(2) + chrono::Duration::minutes(minute as i64);
        let mut request = RecordRequest::new("acme", 1, at);
        request.event_type = Some("completion".into());
        request.properties = [("tokens", tokens.to_string()), ("model", model.into())]
            .into_iter()
            .chain([("user", user.to_string())])
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert!(store.record(&config, &request, now()).unwrap().recorded);
    }
    (dir, store)
}

fn priced_app(store: &Store) -> App {
    let config = priced_config();
    let dashboard = store.dashboard(&config, now()).unwrap();
    App::new(
        config,
        "m.db".into(),
        "plans.toml".into(),
        Theme::MONOCHROME,
        now(),
        dashboard,
    )
}

fn line_of(buffer: &ratatui::buffer::Buffer, needle: &str) -> String {
    let y = row_of(buffer, needle);
    text(buffer).lines().nth(y as usize).unwrap().to_string()
}

/// The words of a line's part right of `from`.
fn words_after(line: &str, from: &str) -> Vec<String> {
    let at = line
        .find(from)
        .unwrap_or_else(|| panic!("{from} in {line}"));
    line[at..]
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_detail_lists_each_group_with_its_units_past_the_limit_and_money() {
    let (_dir, store) = database();
    let mut app = priced_app(&store);
    app_with_detail(&mut app, &store, "acme").unwrap();
    let buffer = render(&mut app, 120, 40);
    let screen = text(&buffer);
    assert!(
        screen.contains("overage 1,400 = $4.20 at each group's rate"),
        "{screen}"
    );
    // Largest first: used, units past the limit, their money at the group's rate.
    let header = line_of(&buffer, " money");
    assert_eq!(words_after(&header, "used"), ["used", "over", "money"]);
    for (model, figures) in [
        ("tiny", ["tiny", "1,000", "1,000", "$1.00"]),
        ("small", ["small", "800", "0", "$0.00"]),
        ("large", ["large", "500", "300", "$3.00"]),
        ("medium", ["medium", "100", "100", "$0.20"]),
    ] {
        let line = line_of(&buffer, &format!(" {model} "));
        assert_eq!(
            words_after(&line, &format!(" {model} ")),
            figures,
            "{screen}"
        );
    }
    insta::assert_snapshot!("detail_priced_groups_120x40", screen);
}

#[test]
fn the_events_view_is_one_line_per_event_with_its_type_and_meters() {
    let (_dir, store) = database();
    let mut app = priced_app(&store);
    app.update(Action::ShowEvents);
    app.apply(DataEvent::Events(store.problem_events(500, now()).unwrap()));
    let buffer = render(&mut app, 120, 20);
    let screen = text(&buffer);
    // Four events, twelve rows: four lines.
    assert_eq!(
        screen
            .matches("completion → requests, tokens, active_users")
            .count(),
        4,
        "{screen}"
    );
    assert!(screen.contains("Event → meters"), "{screen}");
    assert!(screen.contains(" 1/4 "), "{screen}");
    insta::assert_snapshot!("events_typed_120x20", screen);

    // Its detail: the type and each meter with what the event added there.
    app.update(Action::Open);
    let shown = text(&render(&mut app, 120, 30));
    for expected in [
        "Type        completion",
        "Meters      requests ×1",
        "tokens ×1,000",
        "active_users ×1",
    ] {
        assert!(shown.contains(expected), "{expected}\n{shown}");
    }
}

#[test]
fn the_recent_events_name_the_type_and_meters() {
    let (_dir, store) = database();
    let mut app = priced_app(&store);
    app_with_detail(&mut app, &store, "acme").unwrap();
    let screen = text(&render(&mut app, 120, 56));
    let line = line_of(&render(&mut app, 120, 56), "10:03");
    assert!(
        line.contains("completion → requests, tokens, active_users  … pending"),
        "{screen}"
    );
}

#[test]
fn the_plans_view_lists_each_meters_rates_under_its_terms() {
    let (_dir, store) = database();
    let mut app = priced_app(&store);
    app.update(Action::ShowPlans);
    let buffer = render(&mut app, 120, 30);
    let screen = text(&buffer);
    let tokens = row_of(&buffer, "$0.002");
    let large = row_of(&buffer, "└ model=large");
    let small = row_of(&buffer, "└ model=small|tiny");
    assert_eq!((large, small), (tokens + 1, tokens + 2), "{screen}");
    assert!(
        line_of(&buffer, "└ model=large").contains("$0.01"),
        "{screen}"
    );
    assert!(
        line_of(&buffer, "└ model=small|tiny").contains("$0.001"),
        "{screen}"
    );
    insta::assert_snapshot!("plans_view_rates_120x30", screen);
}
