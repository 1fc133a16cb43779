import anyio
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from fastapi_tasks import Tasks, add_tasks
from fastapi_tasks.opentelemetry import instrument

# Your OpenTelemetry set-up: in production an OTLP exporter to your collector.
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
tracer = provider.get_tracer("shop")

app = FastAPI()
add_tasks(app)
# Every task run is a span, in the trace of the request that scheduled it. Without
# tracer_provider=, the global provider (trace.set_tracer_provider) is used.
instrument(app, tracer_provider=provider)


async def send_receipt(order_id: int) -> None:
    with tracer.start_as_current_span("smtp.send"):  # a child of the task's span
        await anyio.sleep(0.01)


def render_invoice(order_id: int) -> None:
    with tracer.start_as_current_span("pdf.render"):  # in a worker thread: a child too
        pass


@app.post("/orders/{order_id}")
async def create_order(order_id: int, tasks: Tasks) -> dict[str, int]:
    # FastAPI's own telemetry or opentelemetry-instrumentation-fastapi gives you a request span;
    # this example opens one itself so that it works with any set-up.
    with tracer.start_as_current_span("create-order"):
        tasks.task(name="render-invoice").schedule(render_invoice, order_id)
        tasks.after_response.task(name="send-receipt").schedule(send_receipt, order_id)
    return {"order": order_id}
