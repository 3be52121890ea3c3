//! Credits in the dashboard without a terminal: `c` types an amount, Enter asks to confirm it
//! naming the amount and the customer, `y` asks the watcher for one grant under one key, `n`
//! and Esc write nothing; the store's refusal shows in the footer; the Credits column (dropped
//! first when the table is narrow) and the detail's credits box.

use chrono::{Duration, NaiveDate};
use meterline_store::{
    CreditColumn, Dashboard, DashboardRow, Decimal, NewCustomer, NewGrant, RecordRequest, Store,
};
use meterline_tui::action::Action;
use meterline_tui::app::{App, Effect};
use meterline_tui::data::DataEvent;
use meterline_tui::keys::{self, Mode};
use meterline_tui::theme::Theme;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::render::{app_with_detail, now, render, text};
use crate::support::config;

fn row(id: &str, credits: Option<Decimal>) -> DashboardRow {
    DashboardRow {
        customer_id: id.to_string(),
        name: format!("{id} Inc"),
        plan_id: "pro".to_string(),
        limit: Some(100_000),
        mapped: true,
        period: meterline_core::billing::Period {
            start: now() - Duration::days(10),
            end: now() + Duration::days(20),
        },
        used: 50_000,
        backlog: Default::default(),
        archived: false,
        meters: Vec::new(),
        shown: 0,
        credits,
        window: None,
    }
}

/// alpha with $12.40 of credits, bravo without.
fn app() -> App {
    let rows = vec![
        row("alpha", Some(Decimal::new(1240, 2))),
        row("bravo", None),
    ];
    App::new(
        config(),
        "test.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now(),
        Dashboard {
            rows,
            ..Dashboard::default()
        },
    )
}

fn press(app: &mut App, keys: &[KeyEvent]) -> Vec<Effect> {
    keys.iter()
        .filter_map(|k| keys::resolve(app.mode(), k).and_then(|a| app.update(a)))
        .collect()
}

fn typed(text: &str) -> Vec<KeyEvent> {
    text.chars()
        .map(|c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
        .collect()
}

fn hit(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn screen(app: &mut App, width: u16) -> String {
    text(&render(app, width, 30))
}

#[test]
fn a_grant_is_typed_confirmed_with_y_once_and_cancelled_with_n_or_esc() {
    let mut app = app();
    // q and digits are the amount's, not a quit or a view; Backspace takes the q back.
    press(&mut app, &typed("c"));
    assert_eq!(app.mode(), Mode::Amount);
    press(&mut app, &typed("q"));
    press(&mut app, &[hit(KeyCode::Backspace)]);
    press(&mut app, &typed("20"));
    assert!(screen(&mut app, 120).contains("Amount in USD: 20"));
    press(&mut app, &[hit(KeyCode::Enter)]);
    assert_eq!(app.mode(), Mode::Confirm);
    let shown = screen(&mut app, 120);
    assert!(
        shown.contains("Grant $20.00 of credits to alpha?"),
        "{shown}"
    );
    let effects = press(&mut app, &typed("yy"));
    let [
        Effect::GrantCredits {
            customer_id,
            amount,
            key,
        },
    ] = &effects[..]
    else {
        panic!("one grant asked for: {effects:?}");
    };
    assert_eq!((customer_id.as_str(), amount.as_str()), ("alpha", "20"));
    assert!(key.starts_with("dashboard-"), "{key}");
    assert!(app.grant.is_none());

    // n, or Esc while typing or confirming: nothing asked.
    for keys in [
        vec![typed("c7"), vec![hit(KeyCode::Enter)], typed("n")],
        vec![typed("c7"), vec![hit(KeyCode::Esc)]],
        vec![typed("c7"), vec![hit(KeyCode::Enter), hit(KeyCode::Esc)]],
    ] {
        assert_eq!(press(&mut app, &keys.concat()), []);
        assert!(app.grant.is_none());
    }
    // Enter on nothing typed asks nothing.
    press(&mut app, &[typed("c"), vec![hit(KeyCode::Enter)]].concat());
    assert_eq!(app.mode(), Mode::Amount);
}

#[test]
fn the_grant_goes_to_the_open_detail_and_its_outcome_to_the_footer() {
    let mut app = app();
    press(&mut app, &[hit(KeyCode::Down), hit(KeyCode::Enter)]);
    app.update(Action::GrantCredits);
    assert_eq!(app.grant.as_ref().unwrap().customer_id, "bravo");
    app.update(Action::Close);
    app.update(Action::Close);

    let refused = "credit amount \"abc\" is not a decimal number (e.g. 20 or 12.50)";
    app.apply(DataEvent::Granted(Err(refused.into())));
    assert!(screen(&mut app, 120).contains(&format!("error: {refused}")));
    // A new grant clears it.
    app.update(Action::GrantCredits);
    assert!(app.status.is_none());
}

#[test]
fn the_credits_column_follows_refreshes_and_goes_first_when_narrow() {
    let mut app = app();
    let wide = screen(&mut app, 120);
    let line = |screen: &str, needle: &str| -> String {
        let found = screen.lines().find(|l| l.contains(needle));
        found
            .unwrap_or_else(|| panic!("{needle}:\n{screen}"))
            .to_string()
    };
    assert!(line(&wide, "Unreported").contains("Credits"), "{wide}");
    assert!(line(&wide, "alpha Inc").contains("$12.40"), "{wide}");
    assert!(
        line(&wide, "bravo Inc")
            .trim_end_matches('│')
            .ends_with('—')
    );
    // 110 columns keep Used / limit, not Credits.
    let narrower = screen(&mut app, 110);
    assert!(line(&narrower, "Unreported").contains("Used / limit"));
    assert!(!narrower.contains("Credits"), "{narrower}");

    let mut credits = CreditColumn::default();
    credits
        .customers
        .insert("bravo".into(), Some(Decimal::new(350, 2)));
    app.apply(DataEvent::Changed {
        usage: Vec::new(),
        backlog: None,
        credits: Some(credits),
    });
    assert!(line(&screen(&mut app, 120), "bravo Inc").contains("$3.50"));
    assert_eq!(app.summary.with_credits, 2);

    // Without any customer with credits, no column.
    let mut none = App::new(
        config(),
        "test.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now(),
        Dashboard {
            rows: vec![row("bravo", None)],
            ..Dashboard::default()
        },
    );
    assert!(!screen(&mut none, 120).contains("Credits"));
}

#[test]
fn the_detail_shows_the_balance_the_expiry_schedule_and_the_ledger() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    let config = config();
    let acme = NewCustomer {
        id: "acme".into(),
        name: Some("Acme Robotics".into()),
        plan_id: "pro".into(),
        stripe_customer_id: Some("cus_acme".into()),
        billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 5).unwrap()),
    };
    store.add_customer(&config, &acme, now()).unwrap();
    store
        .record(&config, &RecordRequest::new("acme", 5_000, now()), now())
        .unwrap();
    let grants = [
        NewGrant::new("acme", "20"),
        NewGrant {
            promotional: true,
            expires_at: Some(now() + Duration::days(3)),
            ..NewGrant::new("acme", "5")
        },
        NewGrant {
            expires_at: Some(now() + Duration::days(1)),
            ..NewGrant::new("acme", "1.25")
        },
    ];
    let mut ids = Vec::new();
    for grant in grants {
        ids.push(
            store
                .grant_credits(&config, &grant, now())
                .unwrap()
                .grant
                .id,
        );
    }
    store.void_grant(None, ids[0], now()).unwrap();
    let dashboard = store.dashboard(&config, now()).unwrap();
    let mut app = App::new(
        config,
        "m.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now(),
        dashboard,
    );
    app_with_detail(&mut app, &store, "acme").unwrap();
    let shown = text(&render(&mut app, 120, 40));
    insta::assert_snapshot!("detail_credits_120x40", shown);
}
