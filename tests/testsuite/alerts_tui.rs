//! The dashboard's alerts: delivery counts in the overview header and the recent alerts in
//! the Plans view, read from a real database and rendered with ratatui's TestBackend.

use crate::support::cli::{NOW, Scratch};
use crate::support::engine::{Engine, engine_tests};
use meterline::{Config, Store};
use meterline_tui::action::Action;
use meterline_tui::app::App;
use meterline_tui::data::{ALERTS_LIMIT, AlertsView, DataEvent};
use meterline_tui::theme::Theme;
use meterline_tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

engine_tests!(
    the_header_counts_deliveries_and_the_plans_view_lists_recent_alerts,
    without_alerts_the_screens_are_unchanged,
);

fn screen(app: &mut App) -> String {
    app.set_page(ui::list_rows(120, 30));
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    buffer
        .content()
        .chunks(120)
        .map(|line| line.iter().map(|c| c.symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

fn the_header_counts_deliveries_and_the_plans_view_lists_recent_alerts(engine: Engine) {
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        format!(
            "{}\n[[alerts]]\ncommand = [\"/bin/false\"]\nmax_attempts = 1\nlevels = [\"hard_cap\"]\n\n[[alerts]]\ncommand = [\"/bin/true\"]\nlevels = [\"warning\"]\n",
            std::fs::read_to_string(crate::support::cli::repo_plans()).unwrap()
        ),
    )
    .unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    s.add_customer("globex", "free", "2026-11-01");
    s.record("acme", 1000);
    s.record("globex", 850);
    let config = Config::load(&s.plans).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap().to_utc();
    let store = Store::open(&s.db).unwrap();
    let view = |store: &Store| AlertsView {
        counts: store.alert_counts().unwrap(),
        recent: store.recent_alerts(ALERTS_LIMIT).unwrap(),
    };
    let mut app = App::new(
        config.clone(),
        "test.db".into(),
        "plans.toml".into(),
        Theme::from_env(true),
        now,
        store.dashboard(&config, now).unwrap(),
    );
    app.apply(DataEvent::Alerts(view(&store)));
    let text = screen(&mut app);
    assert!(text.contains("· alerts 3 pending · 0 failed"), "{text}");

    // One destination fails for good, the other delivers.
    s.cmd().arg("alerts").assert().code(1);
    app.apply(DataEvent::Alerts(view(&store)));
    assert!(screen(&mut app).contains("· alerts 0 pending · 1 failed"));
    app.update(Action::ShowPlans);
    let text = screen(&mut app);
    assert!(
        text.contains("Recent alerts · 0 pending, 1 failed"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let acme = lines
        .iter()
        .find(|l| l.contains("acme") && l.contains("hard_cap"));
    assert!(acme.is_some_and(|l| l.contains("1 failed")), "{text}");
    let globex = lines.iter().find(|l| l.contains("globex"));
    assert!(globex.is_some_and(|l| l.contains("delivered")), "{text}");
}

fn without_alerts_the_screens_are_unchanged(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-11-01");
    let config = Config::load(&s.plans).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap().to_utc();
    let store = Store::open(&s.db).unwrap();
    let mut app = App::new(
        config.clone(),
        "test.db".into(),
        "plans.toml".into(),
        Theme::from_env(true),
        now,
        store.dashboard(&config, now).unwrap(),
    );
    app.apply(DataEvent::Alerts(AlertsView::default()));
    assert!(!screen(&mut app).contains("alerts"));
    app.update(Action::ShowPlans);
    assert!(!screen(&mut app).contains("Recent alerts"));
}
