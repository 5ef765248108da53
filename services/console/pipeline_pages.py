"""The pipelines list and the page of one pipeline."""

from __future__ import annotations

from stepforge._resource_names import PIPELINE_PREFIX, STEP_PREFIX, short_name
from stepforge.services.console import formatting as fmt
from stepforge.services.console.components import (
    code,
    details,
    heading,
    link,
    notice,
    pagination,
    section,
    table,
)
from stepforge.services.console.environment import Page
from stepforge.services.console.execution_pages import executions_table
from stepforge.services.console.markup import Html, join, render
from stepforge.services.console.step_pages import io_table
from stepforge.services.console.web import path_to
from stepforge.v1 import common_pb2, execution_pb2, registry_pb2

_CREATE_HINT = (
    "No pipelines in this environment yet. Wrap a ready step in one with the "
    "SDK: sdk.create_pipeline(pipeline_name=..., step_name=...)."
)


def pipelines_list(page: Page[registry_pb2.Pipeline], page_token: str) -> Html:
    """Every pipeline of the page with its step and creation time."""
    rows = [_pipeline_row(pipeline) for pipeline in page.items]
    listing = table(
        ["Name", "Step", "Created", ""],
        rows,
        empty=_CREATE_HINT,
        label="Pipelines",
    )
    return render(
        "{heading}{listing}{pages}",
        heading=heading("Pipelines"),
        listing=listing,
        pages=pagination(
            "pipelines", page.next_page_token, on_first_page=not page_token
        ),
    )


def pipeline_detail(
    pipeline: registry_pb2.Pipeline,
    step: common_pb2.Step | None,
    recent: Page[execution_pb2.Execution],
) -> Html:
    """The pipeline's step with its inputs and outputs, how to run it, and
    its latest executions. `step` is None when it cannot be read."""
    name = short_name(pipeline.name, PIPELINE_PREFIX)
    step_name = short_name(pipeline.step, STEP_PREFIX)
    summary = details(
        [
            ("Step", link(path_to("steps", step_name), step_name)),
            (
                "Step status",
                fmt.status_badge(fmt.step_status(step.status)) if step else "unknown",
            ),
            (
                "Created",
                fmt.time_element(
                    pipeline.create_time, pipeline.HasField("create_time")
                ),
            ),
        ]
    )
    parts = [heading(name), section("Pipeline", summary)]
    if step is None:
        parts.append(
            notice("Its step cannot be read, so its inputs are unknown.", "warning")
        )
    else:
        parts += [
            section("Inputs", io_table(step.inputs, inputs=True)),
            section("Outputs", io_table(step.outputs, inputs=False)),
        ]
    all_executions = path_to("executions", query={"pipeline": name})
    parts += [
        section("Run it", _run_hint(name)),
        section(
            "Latest executions",
            join(
                [
                    executions_table(recent.items, show_pipeline=False),
                    render(
                        '<p class="more">{link}</p>',
                        link=link(all_executions, "All executions of this pipeline"),
                    ),
                ]
            ),
        ),
    ]
    return join(parts)


def _pipeline_row(pipeline: registry_pb2.Pipeline) -> list[object]:
    name = short_name(pipeline.name, PIPELINE_PREFIX)
    step_name = short_name(pipeline.step, STEP_PREFIX)
    return [
        link(path_to("pipelines", name), name),
        link(path_to("steps", step_name), step_name),
        fmt.time_element(pipeline.create_time, pipeline.HasField("create_time")),
        link(path_to("executions", query={"pipeline": name}), "Executions"),
    ]


def _run_hint(name: str) -> Html:
    return render(
        "<p>Run it with the SDK, "
        '<code>sdk.run_pipeline("{name}", inputs={{...}})</code>, '
        "or the command line, {command}.</p>",
        name=name,
        command=code(f"stepforge run {name} --input NAME=VALUE"),
    )
