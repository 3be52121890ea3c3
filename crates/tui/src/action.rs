//! The single vocabulary of user intents. Keys resolve to these; `App::update` acts on them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    NextView,
    PrevView,
    ShowOverview,
    ShowEvents,
    ShowPlans,
    /// Open the selected row's detail: a customer, or an event in the Events view.
    Open,
    /// Close the top popup (or clear the filter).
    Close,
    Help,
    /// Start typing a filter.
    Filter,
    FilterChar(char),
    FilterBackspace,
    /// Keep the typed filter and go back to the list.
    FilterDone,
    CycleSort,
    ReverseSort,
    /// Show or hide archived customers.
    ToggleArchived,
    /// Choose the meter the overview's gauges show (with several meters).
    PickMeter,
    Refresh,
    /// Open the Stripe sync confirmation.
    Sync,
    /// Answer yes in a confirmation.
    Confirm,
    /// Grant money credits to the selected customer: type the amount, then confirm.
    GrantCredits,
    AmountChar(char),
    AmountBackspace,
    /// Done typing the amount: ask to confirm it.
    AmountDone,
}

impl Action {
    /// What the action does, for the help overlay.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Action::Quit => "quit",
            Action::Up => "move up",
            Action::Down => "move down",
            Action::PageUp => "page up",
            Action::PageDown => "page down",
            Action::Top => "first row",
            Action::Bottom => "last row",
            Action::NextView => "next view",
            Action::PrevView => "previous view",
            Action::ShowOverview => "overview",
            Action::ShowEvents => "events needing attention",
            Action::ShowPlans => "plans",
            Action::Open => "details of the selected row",
            Action::Close => "close popup / clear filter",
            Action::Help => "this help",
            Action::Filter => "filter by name or plan",
            Action::FilterChar(_) => "type the filter",
            Action::FilterBackspace => "delete a character",
            Action::FilterDone => "keep the filter",
            Action::CycleSort => "next sort order",
            Action::ReverseSort => "reverse the sort",
            Action::ToggleArchived => "show / hide archived customers",
            Action::PickMeter => "choose the meter the gauges show",
            Action::Refresh => "reload everything",
            Action::Sync => "sync usage to Stripe",
            Action::Confirm => "confirm",
            Action::GrantCredits => "grant credits to the customer",
            Action::AmountChar(_) => "type the amount",
            Action::AmountBackspace => "delete a character",
            Action::AmountDone => "review the grant before it is made",
        }
    }
}
