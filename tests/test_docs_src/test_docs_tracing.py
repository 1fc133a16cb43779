"""docs/tracing.md: the traced app puts its tasks in the request's trace."""

import pytest

pytest.importorskip(
    "opentelemetry.sdk", reason="needs the opentelemetry extra (pip install '.[test]')"
)

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from fastapi_tasks.testing import wait_for_tasks


@pytest.mark.anyio
async def test_the_tasks_of_a_request_are_in_its_trace(load_example, serve) -> None:
    example = load_example("docs_src.tracing.app")
    exporter = InMemorySpanExporter()
    example.provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        async with serve(example.app) as client:
            assert (await client.post("/orders/42")).json() == {"order": 42}
            await wait_for_tasks(example.app)
    finally:
        example.provider.shutdown()  # also stops the example's batch exporter thread
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert sorted(spans) == [
        "create-order",
        "pdf.render",
        "render-invoice",
        "send-receipt",
        "smtp.send",
    ]
    request = spans["create-order"]
    assert {span.context.trace_id for span in spans.values()} == {request.context.trace_id}

    def parent(name: str) -> str:
        span_parent = spans[name].parent
        assert span_parent is not None
        return next(n for n, s in spans.items() if s.context.span_id == span_parent.span_id)

    assert parent("render-invoice") == parent("send-receipt") == "create-order"
    assert parent("pdf.render") == "render-invoice"
    assert parent("smtp.send") == "send-receipt"
    attributes = spans["send-receipt"].attributes or {}
    assert attributes["fastapi_tasks.task.timing"] == "after_response"
    assert attributes["fastapi_tasks.task.outcome"] == "succeeded"
