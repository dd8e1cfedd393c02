"""The analytics API's names: every metric and every dimension (spec §9.3–§9.4), and where each
dimension's value comes from in what opencues stores.

``DIMENSIONS`` is the one mapping table: the compiler (``opencues.analytics_sql``) reads values
through it, ``docs/analytics.md`` prints it (``markdown_table``, checked by the tests) and the
tests walk it. A dimension is also a condition field and (mostly) a raw column.

Sources:

- ``column``: a column of ``events`` (``name``, ``user_id``, ``timestamp``, ``flow_id`` — the
  writers' copy of ``attributes.flowId`` — and the ``context`` object).
- ``event_group``: the event's ``group_id`` column, or ``attributes.groupId`` when it has none.
- ``attribute``: a path in the event's ``attributes`` JSON object (``flow_id`` ↔ ``flowId``).
  ``only_on`` restricts it to some event names (``step_error_message`` exists on step errors only).
- ``constant``: the same value for every event opencues stores (all arrive through the API as
  tracked events).
- ``bucket``: a calendar bucket (``day``/``week``/``month``) in the query's time zone.
- ``segment``: the segments the event's user is a member of (``segment_members``).
- ``profile``: a key of the user's profile (``profiles.attributes``); ``profile_updated`` the
  profile's own ``updated_at``; ``profile_group`` the user's current group (``profiles.group_id``); ``profile_key``/``profile_value`` one row per profile attribute.
- ``null``: a name the vendor lists with no known meaning (``window``): always ``""``.
"""

from __future__ import annotations

from dataclasses import dataclass

TIME_BUCKETS = ("day", "week", "month")

COUNT_METRICS = ("events", "users", "sessions", "groups")
NPS_METRICS = (
    "nps_computed_score",
    "nps_promoters",
    "nps_neutrals",
    "nps_detractors",
    "nps_survey_started",
    "nps_scores_submitted",
    "nps_feedbacks_submitted",
    "nps_respondents",
)
METRICS = COUNT_METRICS + NPS_METRICS

# Event names the NPS metrics read (spec §9.7).
NPS_SCORE_EVENTS = ("appcues:nps_score", "appcues:nps_score_and_feedback")
NPS_FEEDBACK_EVENT = "appcues:nps_feedback"
NPS_BOTH_EVENT = "appcues:nps_score_and_feedback"
NPS_STARTED_EVENT = "appcues:nps_survey_started"
NPS_ROLLING_DAYS = 30

STEP_ERROR_EVENTS = ("appcues:step_error", "appcues:v2:step_error")
STEP_CHILD_ERROR_EVENTS = ("appcues:step_child_error",)


@dataclass(frozen=True)
class Dimension:
    name: str
    group: str
    source: str  # column | attribute | event_group | constant | bucket | segment | profile | profile_updated | profile_group | profile_key | profile_value | null
    target: object = None  # column name, attribute path (tuple), constant, bucket unit or profile key
    only_on: tuple[str, ...] = ()
    json: bool = False  # the value is a JSON object: raw columns show it as one
    meaning: str = ""

    @property
    def stored_as(self) -> str:
        """Where the value comes from, as ``docs/analytics.md`` shows it."""
        if self.source == "column":
            return f"`events.{self.target}`"
        if self.source == "attribute" and not self.target:
            return "`events.attributes`"
        if self.source == "attribute":
            where = "`attributes." + ".".join(self.target) + "`"
            return where + (f" on {', '.join(f'`{n}`' for n in self.only_on)}" if self.only_on else "")
        if self.source == "event_group":
            return "`events.group_id`, else `attributes.groupId`"
        if self.source == "constant":
            return f'always `"{self.target}"`'
        if self.source == "bucket":
            return f"`events.timestamp`, {self.target} bucket in `timezone`"
        if self.source == "segment":
            return "`segment_members.segment_id` of the event's user (one row per segment)"
        if self.source == "profile":
            return f"`profiles.attributes.{self.target}` of the event's user"
        if self.source == "profile_updated":
            return "`profiles.updated_at` of the event's user"
        if self.source == "profile_group":
            return "`profiles.group_id` of the event's user"
        if self.source == "profile_key":
            return "each key of the user's `profiles.attributes` (one row per key)"
        if self.source == "profile_value":
            return "each value of the user's `profiles.attributes` (one row per key)"
        return 'always `""` (meaning unknown)'

    @property
    def needs_profile(self) -> bool:
        return self.source in ("profile", "profile_updated", "profile_group", "profile_key", "profile_value")

    @property
    def explodes(self) -> bool:
        """Whether reading it gives an event one row per value (segments, profile attributes)."""
        return self.source in ("segment", "profile_key", "profile_value")


def _attr(name: str, group: str, path: str, meaning: str, *, only_on: tuple[str, ...] = (), json: bool = False) -> Dimension:
    return Dimension(name, group, "attribute", tuple(path.split(".")), only_on, json, meaning)


_TABLE: tuple[Dimension, ...] = (
    Dimension("day", "Time", "bucket", "day", meaning="local calendar day, `YYYY-MM-DD`"),
    Dimension("week", "Time", "bucket", "week", meaning="local week starting Monday, `YYYY-MM-DD` of the Monday"),
    Dimension("month", "Time", "bucket", "month", meaning="local month, `YYYY-MM-01`"),
    Dimension("timestamp", "Time", "column", "timestamp", meaning="event time, ISO 8601 with ms in `timezone`"),
    Dimension("name", "Event", "column", "name", meaning="event name"),
    Dimension("event", "Event", "column", "name", meaning="alias of `name`"),
    Dimension("event_type", "Event", "constant", "track", meaning="event kind (`track`: opencues stores tracked events)"),
    Dimension("source", "Event", "constant", "api", meaning="origin (`api`: events reach opencues through the API)"),
    _attr("platform", "Event", "platform", "`web`, `ios`, `android`"),
    _attr("app_id", "Event", "appId", "app id"),
    Dimension("attributes", "Event", "attribute", (), json=True, meaning="the whole attributes object"),
    Dimension("context", "Event", "column", "context", json=True, meaning="the context object sent with the event"),
    Dimension("user_id", "Identity", "column", "user_id", meaning="end user"),
    Dimension("group_id", "Identity", "event_group", meaning="group of the event"),
    _attr("session_id", "Identity", "_sessionId", "session"),
    Dimension("email", "Identity", "profile", "email", meaning="the user's profile email"),
    _attr("identity", "Identity", "_identity", "profile snapshot sent with the event", json=True),
    Dimension("flow_id", "Flows", "column", "flow_id", meaning="flow (or NPS survey) id: `attributes.flowId` as text"),
    _attr("flow_version", "Flows", "flowVersion", "flow version"),
    _attr("flow_type", "Flows", "flowType", "flow type"),
    _attr("step_id", "Flows", "stepId", "step id"),
    _attr("step_type", "Flows", "stepType", "step type"),
    _attr("step_child_id", "Flows", "stepChildId", "step child id"),
    _attr("interaction_type", "Flows", "interactionType", "interaction type"),
    _attr("interaction_data", "Flows", "interaction", "interaction object", json=True),
    _attr("step_error_message", "Flow errors", "message", "step error message", only_on=STEP_ERROR_EVENTS),
    _attr("step_error_url", "Flow errors", "url", "page of the step error", only_on=STEP_ERROR_EVENTS),
    _attr("step_child_error_message", "Flow errors", "message", "step child error message", only_on=STEP_CHILD_ERROR_EVENTS),
    _attr("step_child_error_url", "Flow errors", "url", "page of the step child error", only_on=STEP_CHILD_ERROR_EVENTS),
    _attr("experience_id", "Experiences", "experienceId", "Flows 2.0, pin or other experience id"),
    _attr("experience_type", "Experiences", "experienceType", "experience type"),
    _attr("survey_id", "Experiences", "surveyId", "survey/form id"),
    _attr("response_value", "Experiences", "responseValue", "submitted value"),
    _attr("search_query", "Experiences", "searchQuery", "launchpad search text"),
    _attr("checklist_id", "Checklists", "checklistId", "checklist id"),
    _attr("checklist_item_id", "Checklists", "itemId", "checklist item id"),
    _attr("item_id", "Checklists", "itemId", "checklist item id"),
    _attr("goal_id", "Goals & experiments", "goalId", "goal reached"),
    _attr("goal_version", "Goals & experiments", "goalVersion", "goal version"),
    _attr("experiment_id", "Goals & experiments", "experimentId", "experiment"),
    _attr("experiment_group", "Goals & experiments", "experimentGroup", "experiment arm"),
    _attr("score", "NPS", "score", "NPS score 0–10"),
    _attr("nps_raw_score", "NPS", "score", "alias of `score`"),
    _attr("feedback", "NPS", "feedback", "NPS reply text"),
    _attr("nps_feedback", "NPS", "feedback", "alias of `feedback`"),
    Dimension("window", "NPS", "null", meaning="unknown: always empty"),
    _attr("url", "Page", "url", "page URL"),
    _attr("hostname", "Page", "_hostname", "page host name"),
    _attr("path", "Page", "path", "page path"),
    _attr("hash", "Page", "hash", "page URL fragment"),
    _attr("query", "Page", "query", "page query string"),
    _attr("screen_id", "Page", "screenId", "mobile screen"),
    _attr("context_url", "Page", "contextUrl", "URL of the event's context"),
    _attr("current_page_url", "Page", "_currentPageUrl", "current page URL"),
    _attr("last_page_url", "Page", "_lastPageUrl", "previous page URL"),
    _attr("user_agent_browser", "Device", "userAgentBrowser", "browser"),
    _attr("user_agent_os", "Device", "userAgentOs", "operating system"),
    _attr("user_agent_device", "Device", "userAgentDevice", "device"),
    _attr("user_agent_cpu", "Device", "userAgentCpu", "CPU"),
    _attr("user_agent_engine", "Device", "userAgentEngine", "browser engine"),
    _attr("locale_id", "Device", "_localeId", "locale id"),
    _attr("locale_name", "Device", "_localeName", "locale name"),
    Dimension("segment_id", "Membership", "segment", meaning="a segment the user is a member of"),
    Dimension("user_segment_id", "Membership", "segment", meaning="alias of `segment_id`"),
    _attr("campaign_id", "Membership", "campaignId", "workflow campaign"),
    _attr("tactic_id", "Membership", "tacticId", "workflow tactic"),
    Dimension("user_group_id", "Membership", "profile_group", meaning="the user's current group"),
    Dimension("attribute_name", "Profiles", "profile_key", meaning="a profile attribute's name"),
    Dimension("attribute_value", "Profiles", "profile_value", meaning="that attribute's value"),
    Dimension("last_seen", "Profiles", "profile", "_lastSeenAt", meaning="the profile's `_lastSeenAt`"),
    Dimension("last_updated", "Profiles", "profile_updated", meaning="when the profile last changed, ISO 8601"),
)

DIMENSIONS: dict[str, Dimension] = {d.name: d for d in _TABLE}


def markdown_table() -> str:
    """The mapping as the Markdown table of ``docs/analytics.md``."""
    lines = ["| Group | Name | Read from | Meaning |", "|---|---|---|---|"]
    for d in _TABLE:
        lines.append(f"| {d.group} | `{d.name}` | {d.stored_as} | {d.meaning} |")
    return "\n".join(lines)
