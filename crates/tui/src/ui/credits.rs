//! Credits: the detail view's box (balance, expiry schedule, the ledger's last entries) and the
//! popup that grants credits from the keyboard.

use std::str::FromStr;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use rust_decimal::Decimal;

use super::format::{ellipsis, stored_minute};
use crate::action::Action;
use crate::app::{App, GrantForm};
use crate::config::Config;
use crate::keys::{self, Mode};
use crate::sanitize::sanitize;
use crate::store::{Amounts, CreditDetail};

/// An amount as people read it: money in the plans' currency, or a meter's units
/// ("5,000 tokens").
pub(crate) fn credit_amount(config: &Config, meter: Option<&str>, amount: Decimal) -> String {
    match meter {
        None => config.money(amount),
        Some(meter) => format!("{} {}", units(amount), sanitize(meter)),
    }
}

/// A meter's units: whole ones grouped by thousands ("50,000"), others as stored.
fn units(amount: Decimal) -> String {
    match i64::try_from(amount.trunc()) {
        Ok(whole) if amount.fract().is_zero() => crate::billing::thousands(whole),
        _ => amount.normalize().to_string(),
    }
}

/// A ledger entry's amount with its sign: "+$20.00", "-$5.00".
pub(crate) fn signed(config: &Config, meter: Option<&str>, amount: Decimal) -> String {
    let sign = if amount.is_sign_negative() { "-" } else { "+" };
    format!("{sign}{}", credit_amount(config, meter, amount.abs()))
}

/// The most lines a column of the box has (its title included): the balance's, up to 5
/// grants expiring, the ledger's last 5 entries.
const MAX_LINES: u16 = 6;

/// The box's height, borders included; none for a customer that never had credits (the
/// footer names the key that grants some).
pub(super) fn box_height(credits: &CreditDetail) -> u16 {
    if credits.is_empty() {
        return 0;
    }
    let balance = 2 + credits.balance.units.len();
    let expiring = 1 + expiring(credits).len().max(1);
    let ledger = 1 + credits.recent.len();
    let lines = balance.max(expiring).max(ledger);
    u16::try_from(lines).unwrap_or(MAX_LINES).min(MAX_LINES) + 2
}

/// The live grants with an expiry, soonest first: (remaining, meter, when).
fn expiring(credits: &CreditDetail) -> Vec<(Decimal, Option<&str>, &str)> {
    let mut grants: Vec<_> = credits
        .balance
        .grants
        .iter()
        .filter_map(|live| {
            let at = live.grant.expires_at.as_deref()?;
            Some((live.remaining, live.grant.meter.as_deref(), at))
        })
        .collect();
    grants.sort_by(|a, b| a.2.cmp(b.2));
    grants.truncate(usize::from(MAX_LINES) - 1);
    grants
}

pub(super) fn draw(frame: &mut Frame, app: &App, credits: &CreditDetail, area: Rect) {
    if area.height == 0 {
        return;
    }
    let key = keys::first_key(Mode::Normal, Action::GrantCredits);
    let block = Block::bordered().title(format!(" Credits · {key} grants "));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [balance, expiry, ledger] = Layout::horizontal([
        Constraint::Length(BALANCE_WIDTH),
        Constraint::Fill(2),
        Constraint::Fill(3),
    ])
    .spacing(2)
    .areas(inner);
    frame.render_widget(Paragraph::new(balance_lines(app, credits)), balance);
    frame.render_widget(Paragraph::new(expiry_lines(app, credits)), expiry);
    frame.render_widget(Paragraph::new(ledger_lines(app, credits)), ledger);
}

/// The balance column's width, and its unit's and figures' within it (a space before each).
const BALANCE_WIDTH: u16 = 41;
const UNIT_WIDTH: usize = 7;
const FIGURE_WIDTH: usize = 10;

/// The balance column: a line per unit (money, then each meter's), its figures right-aligned
/// under their titles; a figure too wide still keeps its space before it.
fn balance_lines(app: &App, credits: &CreditDetail) -> Vec<Line<'static>> {
    let theme = app.theme;
    // The unit heads the line, so a meter's figures go without its name.
    let figures = |meter: Option<&str>, a: &Amounts| {
        let shown = |amount| match meter {
            None => app.config.money(amount),
            Some(_) => units(amount),
        };
        let unit = meter.map_or_else(|| "money".to_string(), |m| sanitize(m).into_owned());
        Line::from(vec![
            Span::raw(format!(
                "{:<UNIT_WIDTH$} {:>FIGURE_WIDTH$} {:>FIGURE_WIDTH$} ",
                ellipsis(&unit, UNIT_WIDTH as u16),
                shown(a.balance),
                shown(a.held)
            )),
            Span::styled(
                format!("{:>FIGURE_WIDTH$}", shown(a.available)),
                theme.good(),
            ),
        ])
    };
    let title = format!(
        "{:<UNIT_WIDTH$} {:>FIGURE_WIDTH$} {:>FIGURE_WIDTH$} {:>FIGURE_WIDTH$}",
        "Credits", "balance", "held", "available"
    );
    let mut lines = vec![
        Line::styled(title, theme.header()),
        figures(None, &credits.balance.money),
    ];
    for (meter, a) in &credits.balance.units {
        lines.push(figures(Some(meter), a));
    }
    lines
}

fn expiry_lines(app: &App, credits: &CreditDetail) -> Vec<Line<'static>> {
    let theme = app.theme;
    let mut lines = vec![Line::styled("Expires", theme.header())];
    let grants = expiring(credits);
    if grants.is_empty() {
        lines.push(Line::styled("nothing expires", theme.dim()));
    }
    for (remaining, meter, at) in grants {
        lines.push(Line::from(vec![
            Span::raw(credit_amount(&app.config, meter, remaining)),
            Span::styled(format!(" on {}", stored_minute(at)), theme.attention()),
        ]));
    }
    lines
}

fn ledger_lines(app: &App, credits: &CreditDetail) -> Vec<Line<'static>> {
    let (theme, config) = (app.theme, &app.config);
    let mut lines = vec![Line::styled("Ledger, newest first", theme.header())];
    for e in &credits.recent {
        let meter = e.meter.as_deref();
        lines.push(Line::from(vec![
            Span::styled(format!("{} ", stored_minute(&e.at)), theme.dim()),
            Span::raw(format!(
                "{:<6} {} → {}",
                sanitize(&e.kind),
                signed(config, meter, e.amount),
                credit_amount(config, meter, e.remaining)
            )),
        ]));
    }
    lines
}

/// The amount typed, as the confirmation names it: money when it reads as a number, else
/// the text itself (the store then says what is wrong with it).
fn typed_amount(config: &Config, typed: &str) -> String {
    match Decimal::from_str(typed.trim()) {
        Ok(amount) => config.money(amount),
        Err(_) => format!("\"{}\"", sanitize(typed.trim())),
    }
}

/// The grant popup: the amount being typed, then the confirmation naming amount and customer.
pub(super) fn draw_grant(frame: &mut Frame, app: &App, area: Rect) {
    let Some(form) = &app.grant else {
        return;
    };
    let theme = app.theme;
    let lines = match &form.confirming {
        None => typing_lines(app, form),
        Some(_) => vec![
            Line::from(format!(
                "Grant {} of credits to {}?",
                typed_amount(&app.config, &form.amount),
                sanitize(&form.customer_id)
            )),
            Line::styled(
                format!("{} · paid, never expiring", sanitize(&form.name)),
                theme.dim(),
            ),
            Line::from(""),
            Line::from(vec![
                Span::styled(keys::keys_for(Mode::Confirm, Action::Confirm), theme.key()),
                Span::raw(" grant · "),
                Span::styled(keys::keys_for(Mode::Confirm, Action::Close), theme.key()),
                Span::raw(" cancel"),
            ]),
        ],
    };
    let rect = super::popup(frame, area, 64, 7);
    let block = Block::bordered().title(" Grant credits ");
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}

fn typing_lines(app: &App, form: &GrantForm) -> Vec<Line<'static>> {
    let theme = app.theme;
    let currency = app.config.billing.currency.to_ascii_uppercase();
    vec![
        Line::from(format!(
            "To {} ({})",
            sanitize(&form.name),
            sanitize(&form.customer_id)
        )),
        Line::from(vec![
            Span::styled(format!("Amount in {currency}: "), theme.dim()),
            Span::raw(sanitize(&form.amount).into_owned()),
            Span::styled("▏", theme.key()),
        ]),
        Line::from(""),
        Line::from(vec![
            Span::styled(
                keys::keys_for(Mode::Amount, Action::AmountDone),
                theme.key(),
            ),
            Span::raw(" review · "),
            Span::styled(keys::keys_for(Mode::Amount, Action::Close), theme.key()),
            Span::raw(" cancel"),
        ]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(crate::config::EXAMPLE_PLANS, "example").unwrap()
    }

    #[test]
    fn money_in_the_currency_and_units_with_their_meter() {
        let config = config();
        assert_eq!(
            credit_amount(&config, None, Decimal::new(1240, 2)),
            "$12.40"
        );
        assert_eq!(
            credit_amount(&config, Some("tokens"), Decimal::from(50_000)),
            "50,000 tokens"
        );
        assert_eq!(signed(&config, None, Decimal::from(20)), "+$20.00");
        assert_eq!(signed(&config, None, Decimal::new(-525, 2)), "-$5.25");
    }

    #[test]
    fn the_confirmation_names_money_or_the_text_typed() {
        let config = config();
        assert_eq!(typed_amount(&config, " 20 "), "$20.00");
        assert_eq!(typed_amount(&config, "12.5"), "$12.50");
        assert_eq!(typed_amount(&config, "abc"), "\"abc\"");
    }
}
