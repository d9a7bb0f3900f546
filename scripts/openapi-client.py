"""Calls logproxy through the client openapi-python-client generated from its live document.

Run by scripts/openapi-client.sh, which generates the package `logproxy_client` (on
PYTHONPATH) from a service whose `logs.levels` held `critical`, then reloads the service
without it. Usage: openapi-client.py BASE_URL API_KEY
"""

import asyncio
import inspect
import sys
import traceback
import typing

BASE_URL, KEY = sys.argv[1:3]
QUERY = ("log_type", "hours", "level", "limit", "start", "end", "cursor")
CASES = []


def case(test):
    CASES.append(test)
    return test


def logs_operation():
    from logproxy_client.api.apps import get_app_logs_v1_apps_app_id_logs_get

    return get_app_logs_v1_apps_app_id_logs_get


def client():
    from logproxy_client import AuthenticatedClient

    return AuthenticatedClient(base_url=BASE_URL, token=KEY, raise_on_unexpected_status=True)


def get_logs(app_id, **query):
    return logs_operation().sync_detailed(app_id, client=client(), **query)


def error_code(response):
    from logproxy_client.models import ErrorResponse

    assert isinstance(response.parsed, ErrorResponse), response.parsed
    return response.parsed.error.code.value


@case
def the_logs_operation_takes_the_four_query_parameters_as_arguments():
    params = inspect.signature(logs_operation().sync_detailed).parameters
    assert all(p in params for p in QUERY) and "query" not in params, list(params)
    from logproxy_client.models import Level, LogType

    hints = typing.get_type_hints(logs_operation().sync_detailed)
    assert LogType in typing.get_args(hints["log_type"]), hints["log_type"]
    assert Level in typing.get_args(hints["level"]), hints["level"]
    assert {m.value for m in LogType} == {"runtime", "requests"}
    assert {"error", "warn", "warning", "critical", ""} <= {m.value for m in Level}
    assert (params["hours"].default, params["limit"].default) == (1, 100)


@case
def a_200_parses_into_runtime_entries_of_the_level_asked_for():
    from logproxy_client.models import AppLogsResponse, Level, LogType, RuntimeLogEntry

    response = get_logs("demo-app-1", log_type=LogType.RUNTIME, hours=2, level=Level.ERROR, limit=5)
    assert response.status_code == 200, response.content
    assert isinstance(response.parsed, AppLogsResponse), response.parsed
    entries = response.parsed.entries
    assert 1 <= len(entries) <= 5, entries
    assert all(isinstance(e, RuntimeLogEntry) and e.level == "error" for e in entries), entries


@case
def a_400_refuses_a_level_dropped_since_the_client_was_generated_for_requests_too():
    from logproxy_client.models import Level, LogType

    response = get_logs(
        "demo-app-1", log_type=LogType.REQUESTS, hours=1, level=Level.CRITICAL, limit=10
    )
    assert response.status_code == 400, response.content
    assert error_code(response) == "invalid_level", response.content
    allowed = response.parsed.error.details.additional_properties["allowed"]
    assert "critical" not in allowed, allowed


@case
def a_429_once_the_apps_burst_is_spent():
    """Three calls at once to an app with a burst of 1: at most two are admitted, even
    if they were spread over the app's second."""
    from logproxy_client.models import Level, LogType

    async def three_at_once():
        query = {"log_type": LogType.REQUESTS, "hours": 1, "level": Level.INFO, "limit": 1}
        calls = [
            logs_operation().asyncio_detailed("limited-app", client=client(), **query)
            for _ in range(3)
        ]
        return await asyncio.gather(*calls)

    responses = asyncio.run(three_at_once())
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert error_code(refused) == "rate_limited", refused.content
    assert int(refused.headers["retry-after"]) >= 1, refused.headers


@case
def next_cursor_pages_through_a_window_to_what_one_request_of_it_holds():
    """The window's entries, 7 a page through the client's `cursor` argument, are one
    request's of the same window."""
    import datetime

    from logproxy_client.models import AppLogsResponse, LogType

    end = datetime.datetime.now(datetime.timezone.utc)
    start = end - datetime.timedelta(hours=3)
    window = {"log_type": LogType.RUNTIME, "start": start, "end": end}
    whole = get_logs("demo-app-1", limit=1000, **window).parsed
    assert isinstance(whole, AppLogsResponse) and whole.next_cursor is None, whole
    paged, cursor, pages = [], None, 0
    while True:
        query = dict(window, limit=7) if cursor is None else {"cursor": cursor, "limit": 7}
        page = get_logs("demo-app-1", **query).parsed
        assert isinstance(page, AppLogsResponse), page
        paged.extend(page.entries)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages > 1 and [e.to_dict() for e in paged] == [e.to_dict() for e in whole.entries], (
        pages,
        len(paged),
        len(whole.entries),
    )


failed = 0
for test in CASES:
    try:
        test()
        print(f"{test.__name__} ... ok")
    except Exception:  # noqa: BLE001 - every failure is reported the same way
        failed += 1
        print(f"{test.__name__} ... FAILED")
        traceback.print_exc(limit=-2, file=sys.stdout)
print(f"openapi-client: {len(CASES) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
