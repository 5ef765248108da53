"""The steps list and the page of one step."""

from __future__ import annotations

from collections.abc import Sequence

from stepforge._resource_names import PIPELINE_PREFIX, STEP_PREFIX, short_name
from stepforge.services.console import formatting as fmt
from stepforge.services.console.components import (
    code,
    details,
    heading,
    link,
    muted,
    or_not_set,
    pagination,
    preformatted,
    section,
    table,
)
from stepforge.services.console.environment import Page
from stepforge.services.console.markup import Html, join, render
from stepforge.services.console.web import path_to
from stepforge.v1 import common_pb2, registry_pb2

_CREATE_HINT = (
    "No steps in this environment yet. Create one with the SDK: "
    "sdk.create_step(function_path=..., function_name=...)."
)


def steps_list(page: Page[common_pb2.Step], page_token: str) -> Html:
    """Every step of the page with its status, function and creation time."""
    rows = [_step_row(step) for step in page.items]
    listing = table(
        ["Name", "Status", "Function", "Inputs", "Outputs", "Origin", "Created"],
        rows,
        empty=_CREATE_HINT,
        label="Steps",
    )
    return render(
        "{heading}{listing}{pages}",
        heading=heading("Steps"),
        listing=listing,
        pages=pagination("steps", page.next_page_token, on_first_page=not page_token),
    )


def step_detail(
    step: common_pb2.Step, pipelines: Sequence[registry_pb2.Pipeline]
) -> Html:
    """Status, function, inputs and outputs, container settings, creation
    info, the pipelines that wrap it and the build log."""
    name = short_name(step.name, STEP_PREFIX)
    description = (
        render('<p class="description">{text}</p>', text=step.description)
        if step.description
        else Html("")
    )
    parts = [
        heading(name, fmt.status_badge(fmt.step_status(step.status))),
        description,
        section("Function", _function(step)),
        section("Inputs", io_table(step.inputs, inputs=True)),
        section("Outputs", io_table(step.outputs, inputs=False)),
        section("Container configuration", _container(step.container_config)),
        section("Creation", _creation(step)),
        section("Pipelines", _pipelines(pipelines)),
        section("Build log", _build_log(step), anchor="build-log"),
    ]
    return join(parts)


def io_table(
    declared: Sequence[common_pb2.StepInput] | Sequence[common_pb2.StepOutput],
    *,
    inputs: bool,
) -> Html:
    """The declared inputs or outputs with their types and defaults."""
    rows: list[list[object]] = []
    for item in declared:
        row: list[object] = [code(item.name), fmt.data_type(item.data_type)]
        if isinstance(item, common_pb2.StepInput):
            row.append("required" if item.is_required else "optional")
        row += [_default(item), or_not_set(item.description)]
        rows.append(row)
    headers = (
        ["Name", "Type"] + (["Required"] if inputs else []) + ["Default", "Description"]
    )
    kind = "inputs" if inputs else "outputs"
    return table(headers, rows, empty=f"The step declares no {kind}.", label=kind)


def _step_row(step: common_pb2.Step) -> list[object]:
    name = short_name(step.name, STEP_PREFIX)
    return [
        link(path_to("steps", name), name),
        fmt.status_badge(fmt.step_status(step.status)),
        code(f"{step.function_path}:{step.function_name}"),
        len(step.inputs),
        len(step.outputs),
        fmt.ORIGIN_NAMES.get(step.origin, "unknown"),
        fmt.time_element(step.create_time, step.HasField("create_time")),
    ]


def _default(item: common_pb2.StepInput | common_pb2.StepOutput) -> Html:
    which = item.WhichOneof("default_value")
    if which == "default_json":
        return code(fmt.json_text(item.default_json))
    if which == "default_file_content":
        return render(
            "file of {size}", size=fmt.size_text(len(item.default_file_content))
        )
    return muted(fmt.NOT_SET)


def _function(step: common_pb2.Step) -> Html:
    return details(
        [
            ("File", code(step.function_path)),
            ("Function", code(step.function_name)),
        ]
    )


def _container(config: common_pb2.ContainerConfig) -> Html:
    return details(
        [
            ("Language", _optional(config.HasField("language"), config.language)),
            (
                "Requirements file",
                _optional(
                    config.HasField("requirements_path"), config.requirements_path
                ),
            ),
            (
                "Included folders",
                _listed(config.HasField("included_folders"), config.included_folders),
            ),
            (
                "System dependencies",
                _listed(
                    config.HasField("system_dependencies"), config.system_dependencies
                ),
            ),
            (
                "Dockerfile",
                _optional(config.HasField("dockerfile_path"), config.dockerfile_path),
            ),
            (
                "Repository",
                _optional(config.HasField("repository_url"), config.repository_url),
            ),
            (
                "Branch or tag",
                _optional(
                    config.HasField("repository_branch"), config.repository_branch
                ),
            ),
            ("Deploy key", "stored" if config.has_repository_deploy_key else "none"),
        ]
    )


def _optional(is_set: bool, value: str) -> Html:
    return code(value) if is_set else muted("not set")


def _listed(is_set: bool, values: common_pb2.StringList) -> Html:
    if not is_set:
        return muted("not set")
    if not values.values:
        return muted("none")
    return join([code(value) for value in values.values], ", ")


def _creation(step: common_pb2.Step) -> Html:
    archive: object = muted(fmt.NOT_SET)
    if step.archive_sha256:
        archive = render(
            "{size}, SHA-256 {digest}",
            size=fmt.size_text(step.archive_size_bytes),
            digest=code(step.archive_sha256),
        )
    return details(
        [
            ("Origin", fmt.ORIGIN_NAMES.get(step.origin, "unknown")),
            ("Commit", code(step.commit_id) if step.commit_id else muted(fmt.NOT_SET)),
            (
                "Created",
                fmt.time_element(step.create_time, step.HasField("create_time")),
            ),
            (
                "Updated",
                fmt.time_element(step.update_time, step.HasField("update_time")),
            ),
            ("Code archive", archive),
        ]
    )


def _pipelines(pipelines: Sequence[registry_pb2.Pipeline]) -> Html:
    rows = [_pipeline_row(item) for item in pipelines]
    return table(
        ["Pipeline", "Created"],
        rows,
        empty="No pipeline wraps this step yet; sdk.create_pipeline(...) makes one.",
        label="Pipelines",
    )


def _pipeline_row(pipeline: registry_pb2.Pipeline) -> list[object]:
    name = short_name(pipeline.name, PIPELINE_PREFIX)
    return [
        link(path_to("pipelines", name), name),
        fmt.time_element(pipeline.create_time, pipeline.HasField("create_time")),
    ]


def _build_log(step: common_pb2.Step) -> Html:
    if not step.build_log:
        return render('<p class="empty">{text}</p>', text="The build log is empty.")
    return preformatted(step.build_log, "log-block")
