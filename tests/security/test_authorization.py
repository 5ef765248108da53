"""Who may call what: every RPC the server reflects, called with no token, a
revoked one, a user's, another environment's and a project admin's."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from support.reflected_rpcs import (
    ReflectedRpc,
    bearer,
    discover_rpcs,
    invoke,
    status_of,
)
from support.suite import SuiteUnderTest, running_suite
from support.tenants import issue_token, opened_tenancy

from stepforge import Input, Output
from stepforge.v1 import common_pb2

Code = grpc.StatusCode
STEPS, PIPELINES, EXECUTIONS = "steps", "pipelines", "executions"
KNOWN_HOSTS = "# set by the authorization tests\n"


@dataclass(frozen=True)
class Names:
    """The resource names a request is built to name."""

    step: str
    pipeline: str
    execution: str

    def of(self, collection: str) -> str:
        return {STEPS: self.step, PIPELINES: self.pipeline}.get(
            collection, self.execution
        )


# Names that exist in no environment: what another environment's names must
# be indistinguishable from.
NOWHERE = Names("steps/nowhere", "pipelines/nowhere", "executions/" + "0" * 32)

# Reflected messages have their fields only at run time.
Fill = Callable[[Any], None]


@dataclass(frozen=True)
class Coverage:
    """What one RPC is and what each kind of caller gets from it."""

    # The collection the request's `name` field is in; empty for none.
    names: str = ""
    # The repeated field of a list answer; empty when it lists nothing.
    lists: str = ""
    # What a user of another environment gets when it names the resources of
    # the first; None where the RPC names none.
    other_environment: Code | None = Code.NOT_FOUND
    admin: Code = Code.PERMISSION_DENIED
    internal: bool = False
    # Whether the first environment's own token would change what it names.
    destructive: bool = False
    # Content the RPC needs beyond resource names.
    fill: Fill | None = field(default=None, compare=False)


def _step_header(request: Any) -> None:
    request.header.step.function_path = "main.py"
    request.header.step.function_name = "guarded"
    request.header.origin = common_pb2.STEP_ORIGIN_LOCAL


def _output_name(request: Any) -> None:
    request.output_name = "echoed"


def _known_hosts(request: Any) -> None:
    request.settings.known_hosts = KNOWN_HOSTS
    request.update_mask.paths.append("known_hosts")


INTERNAL = Coverage(other_environment=Code.PERMISSION_DENIED, internal=True)
OPEN_TO_ALL = Coverage(other_environment=None, admin=Code.OK)

# Every RPC the suite serves. A new RPC fails test_every_rpc_is_covered until
# it is added here with what each caller may get.
TABLE: dict[str, Coverage] = {
    "BuildInternalService/GetRuntime": INTERNAL,
    # A step name is per environment: the other environment may take it, and
    # then only the missing archive is refused, as for any free name.
    "BuildService/CreateStep": Coverage(
        names=STEPS, other_environment=Code.INVALID_ARGUMENT, fill=_step_header
    ),
    "BuildService/WaitStepBuild": Coverage(names=STEPS),
    "BuildService/ListLanguages": OPEN_TO_ALL,
    "BuildService/DownloadStepArchive": Coverage(names=STEPS),
    "ExecutionService/RunPipeline": Coverage(names=PIPELINES),
    "ExecutionService/GetExecution": Coverage(names=EXECUTIONS),
    "ExecutionService/WaitExecution": Coverage(names=EXECUTIONS),
    "ExecutionService/ListExecutions": Coverage(
        lists="executions", other_environment=Code.OK
    ),
    "ExecutionService/ReadExecutionOutput": Coverage(
        names=EXECUTIONS, fill=_output_name
    ),
    "ExecutionService/ReadExecutionLogs": Coverage(names=EXECUTIONS),
    "ExecutionService/CancelExecution": Coverage(names=EXECUTIONS),
    "ExecutionService/DeleteExecution": Coverage(names=EXECUTIONS, destructive=True),
    "RegistryInternalService/AuthenticateToken": INTERNAL,
    "RegistryInternalService/RegisterStep": INTERNAL,
    "RegistryInternalService/UpdateStepBuild": INTERNAL,
    "RegistryInternalService/AbandonStep": INTERNAL,
    "RegistryInternalService/ListPendingSteps": INTERNAL,
    "RegistryInternalService/ListReferencedArchives": INTERNAL,
    "RegistryInternalService/AcquirePipelineRun": INTERNAL,
    "RegistryInternalService/ReleasePipelineRun": INTERNAL,
    "RegistryInternalService/ListPipelineRuns": INTERNAL,
    "RegistryService/GetProjectSettings": OPEN_TO_ALL,
    "RegistryService/UpdateProjectSettings": Coverage(
        other_environment=Code.PERMISSION_DENIED, admin=Code.OK, fill=_known_hosts
    ),
    "RegistryService/GetStep": Coverage(names=STEPS),
    "RegistryService/ListSteps": Coverage(lists="steps", other_environment=Code.OK),
    "RegistryService/DeleteStep": Coverage(names=STEPS),
    "RegistryService/CreatePipeline": Coverage(names=PIPELINES),
    "RegistryService/GetPipeline": Coverage(names=PIPELINES),
    "RegistryService/ListPipelines": Coverage(
        lists="pipelines", other_environment=Code.OK
    ),
    "RegistryService/DeletePipeline": Coverage(names=PIPELINES, destructive=True),
}
ALL = sorted(TABLE)
INTERNAL_RPCS = [name for name in ALL if TABLE[name].internal]
PUBLIC_RPCS = [name for name in ALL if not TABLE[name].internal]
OTHER_ENVIRONMENT_RPCS = [name for name in PUBLIC_RPCS if TABLE[name].other_environment]

STEP_CODE = "def guarded(text):\n    return {'echoed': text}\n"


@dataclass
class World:
    """One suite whose default environment holds a step, a pipeline and an
    execution, and a second environment of the same project."""

    suite: SuiteUnderTest
    channel: grpc.Channel
    rpcs: dict[str, ReflectedRpc]
    names: Names
    other_token: str
    revoked_token: str

    def call(self, rpc_name: str, names: Names, token: str | None) -> list[Any]:
        rpc = self.rpcs[rpc_name]
        metadata = bearer(token) if token is not None else ()
        return invoke(self.channel, rpc, build_request(rpc, names), metadata)

    def code(self, rpc_name: str, names: Names, token: str | None) -> Code:
        return status_of(lambda: self.call(rpc_name, names, token))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("authorization")
    with running_suite(root / "data") as suite:
        names = _first_environment_resources(suite, root / "code")
        with opened_tenancy(suite.suite.data_dir) as tenancy:
            tenancy.create_environment("default", "other")
            other = issue_token(tenancy, "default", "other", "other environment")
            revoked = issue_token(tenancy, "default", "default", "to be revoked")
            tenancy.revoke_token(revoked.id)
        with grpc.insecure_channel(suite.url) as channel:
            yield World(
                suite,
                channel,
                discover_rpcs(channel),
                names,
                other.token,
                revoked.token,
            )


def test_every_rpc_is_covered(world: World) -> None:
    assert sorted(world.rpcs) == ALL


@pytest.mark.parametrize("rpc_name", ALL)
def test_a_call_without_a_token_is_unauthenticated(world: World, rpc_name: str) -> None:
    assert world.code(rpc_name, world.names, None) == Code.UNAUTHENTICATED


@pytest.mark.parametrize("rpc_name", ALL)
def test_a_revoked_token_is_unauthenticated(world: World, rpc_name: str) -> None:
    assert world.code(rpc_name, world.names, world.revoked_token) == (
        Code.UNAUTHENTICATED
    )


@pytest.mark.parametrize("rpc_name", INTERNAL_RPCS)
def test_internal_rpcs_refuse_user_and_admin_tokens(
    world: World, rpc_name: str
) -> None:
    for token in (world.suite.token, world.suite.admin_token, world.other_token):
        assert world.code(rpc_name, world.names, token) == Code.PERMISSION_DENIED


@pytest.mark.parametrize("rpc_name", OTHER_ENVIRONMENT_RPCS)
def test_another_environment_cannot_tell_the_resources_exist(
    world: World, rpc_name: str
) -> None:
    coverage = TABLE[rpc_name]

    named = world.code(rpc_name, world.names, world.other_token)
    nowhere = world.code(rpc_name, NOWHERE, world.other_token)

    assert named == coverage.other_environment
    assert named == nowhere
    _assert_untouched(world)
    if not coverage.destructive:
        # The request does name the resources: their owner finds them.
        assert world.code(rpc_name, world.names, world.suite.token) != Code.NOT_FOUND


@pytest.mark.parametrize("rpc_name", [n for n in ALL if TABLE[n].lists])
def test_another_environment_lists_none_of_the_resources(
    world: World, rpc_name: str
) -> None:
    own = world.call(rpc_name, world.names, world.suite.token)
    other = world.call(rpc_name, world.names, world.other_token)

    field_name = TABLE[rpc_name].lists
    assert [item.name for item in getattr(own[0], field_name)]
    assert list(getattr(other[0], field_name)) == []
    ids = {world.names.of(c).partition("/")[2] for c in (STEPS, PIPELINES, EXECUTIONS)}
    serialized = other[0].SerializeToString()
    assert not [resource for resource in ids if resource.encode() in serialized]


@pytest.mark.parametrize("rpc_name", ALL)
def test_an_admin_token_manages_settings_only(world: World, rpc_name: str) -> None:
    assert world.code(rpc_name, world.names, world.suite.admin_token) == (
        TABLE[rpc_name].admin
    )
    _assert_untouched(world)


def test_project_settings_change_with_the_admin_token_only(world: World) -> None:
    update = "RegistryService/UpdateProjectSettings"

    assert world.code(update, world.names, world.suite.token) == (
        Code.PERMISSION_DENIED
    )
    (updated,) = world.call(update, world.names, world.suite.admin_token)
    (seen,) = world.call(
        "RegistryService/GetProjectSettings", NOWHERE, world.other_token
    )

    assert updated.known_hosts == KNOWN_HOSTS
    assert seen.known_hosts == KNOWN_HOSTS


def test_tokens_are_stored_only_as_hashes(world: World) -> None:
    data_dir = world.suite.suite.data_dir
    with opened_tenancy(data_dir) as tenancy:
        issued = issue_token(tenancy, "default", "default", "stored hashed")
    assert world.code("RegistryService/ListSteps", NOWHERE, issued.token) == Code.OK

    contents = _every_file(data_dir)

    digest = hashlib.sha256(issued.token.encode()).hexdigest().encode()
    assert [path for path, data in contents.items() if digest in data]
    assert not [
        path for path, data in contents.items() if issued.token.encode() in data
    ]


def test_a_revoked_token_stops_working_at_once(world: World) -> None:
    with opened_tenancy(world.suite.suite.data_dir) as tenancy:
        issued = issue_token(tenancy, "default", "default", "revoked at once")
        one_per_service = [
            "RegistryService/ListSteps",
            "BuildService/ListLanguages",
            "ExecutionService/ListExecutions",
        ]
        before = [world.code(name, NOWHERE, issued.token) for name in one_per_service]

        tenancy.revoke_token(issued.id)
        after = [world.code(name, NOWHERE, issued.token) for name in one_per_service]

    assert before == [Code.OK] * 3
    assert after == [Code.UNAUTHENTICATED] * 3


def build_request(rpc: ReflectedRpc, names: Names) -> list[Message]:
    """The one request (a stream's header) that names `names`' resources, by
    the convention of the protos' field names, plus the table's content."""
    request = rpc.new_request()
    coverage = TABLE.get(rpc.name, Coverage())
    _name_resources(request, names, coverage.names)
    if coverage.fill is not None:
        coverage.fill(request)
    return [request]


_COLLECTION_OF_MESSAGE = {"Step": STEPS, "Pipeline": PIPELINES, "Execution": EXECUTIONS}
_REFERENCE_FIELDS = {"step": STEPS, "pipeline": PIPELINES, "execution": EXECUTIONS}
_NESTED_FIELDS = frozenset({"header", "step", "pipeline"})


def _name_resources(message: Message, names: Names, collection: str) -> None:
    descriptor = message.DESCRIPTOR
    own = _COLLECTION_OF_MESSAGE.get(descriptor.name, collection)
    for item in descriptor.fields:
        if item.is_repeated:
            continue
        if item.type == FieldDescriptor.TYPE_STRING:
            if item.name == "name" and own:
                setattr(message, item.name, names.of(own))
            elif item.name in _REFERENCE_FIELDS:
                setattr(message, item.name, names.of(_REFERENCE_FIELDS[item.name]))
        elif item.type == FieldDescriptor.TYPE_MESSAGE and item.name in _NESTED_FIELDS:
            _name_resources(getattr(message, item.name), names, own)


def _first_environment_resources(suite: SuiteUnderTest, folder: Path) -> Names:
    folder.mkdir()
    (folder / "main.py").write_text(STEP_CODE)
    suite.sdk.create_step(
        step_name="guarded",
        function_path="main.py",
        function_name="guarded",
        container_config={"local_folder": str(folder)},
        inputs=[Input("text", "string", is_required=True)],
        outputs=[Output("echoed", "string")],
    )
    suite.sdk.create_pipeline(pipeline_name="guarded-pipeline", step_name="guarded")
    run = suite.sdk.run_pipeline("guarded-pipeline", inputs={"text": "secret"})
    return Names(
        "steps/guarded",
        "pipelines/guarded-pipeline",
        f"executions/{run['execution_id']}",
    )


def _assert_untouched(world: World) -> None:
    """The first environment's resources are all still there, as they were."""
    sdk = world.suite.sdk
    execution = sdk.get_pipeline_execution(world.names.execution.partition("/")[2])
    assert execution["status"] == "Succeeded"
    step = sdk.get_step("guarded")
    assert step is not None
    assert step["creation_info"]["status"] == "Ready"
    assert sdk.get_pipeline("guarded-pipeline") is not None


def _every_file(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
