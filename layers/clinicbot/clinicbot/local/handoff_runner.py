"""The hand-off function in the local run and in tests: Lambda's asynchronous invocation, in process.

On AWS the webhook invokes the hand-off function with ``InvocationType="Event"`` once per message
(``clinicbot.handoff.outbox.LambdaOutbox``); Lambda queues the event, runs the function, retries a failed
run ``MaximumRetryAttempts`` times (about 1 and 2 minutes later) and then sends an on-failure record to
the destination queue, ``HandoffDLQ``. moto never runs functions, so:

* :class:`AsyncLambda` has the ``invoke`` of a boto3 ``lambda`` client (hand it to ``LambdaOutbox`` as
  ``client``): it checks the payload the way Lambda does (256 KB), answers 202 and keeps the event;
  :meth:`AsyncLambda.run_pending` then runs each event through a handler -- retried at once, up to the
  template's ``MaximumRetryAttempts`` -- and puts the record Lambda would send (``requestPayload``,
  ``requestContext.condition``, ``responsePayload`` with the error) on the dead-letter queue in moto.
  Events run one after another in the order they came, which Lambda does not promise.
* :class:`LambdaEndpoint` serves the same on loopback as the Lambda ``Invoke`` API, so that the webhook
  function, which builds its own ``LambdaOutbox`` from ``CLINICBOT_HANDOFF_FUNCTION``, reaches it through
  boto3 (``AWS_ENDPOINT_URL_LAMBDA``), as it would reach Lambda.
* :func:`create_dead_letter_queue` makes ``HandoffDLQ`` in moto as the template defines it.

:class:`LocalHandoff` is what ``python -m clinicbot local`` runs: a fake CRM on loopback that prints what
arrives (signature checked), the dead-letter queue, the endpoint, and after each update the events run
through ``functions/handoff/app.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clinicbot.local.fake_crm import TEST_CRM_SECRET, FakeCrm, describe_event

__all__ = [
    "ASYNC_PAYLOAD_LIMIT",
    "AsyncLambda",
    "DeadLetterQueue",
    "Invocation",
    "LambdaEndpoint",
    "LocalHandoff",
    "create_dead_letter_queue",
    "destination_record",
    "invoke_config",
]

log = logging.getLogger(__name__)

ASYNC_PAYLOAD_LIMIT = 256 * 1024
"""Lambda's limit for the payload of an asynchronous invocation."""
FUNCTION_NAME = "clinicbot-handoff"


# ------------------------------------------------------------------------------------------ template
def _template() -> dict[str, Any]:
    from clinicbot.infra.template import load_template

    return load_template()


def _resolve(value: Any, template: dict[str, Any]) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return (template.get("Parameters") or {})[value["Ref"]].get("Default")
    return value


def invoke_config(function: str = "HandoffFunction") -> dict[str, Any]:
    """``EventInvokeConfig`` of the function in ``template.yaml``, parameters at their defaults."""
    template = _template()
    config = dict(template["Resources"][function]["Properties"].get("EventInvokeConfig") or {})
    return {
        "MaximumRetryAttempts": int(_resolve(config.get("MaximumRetryAttempts", 2), template)),
        "MaximumEventAgeInSeconds": int(_resolve(config.get("MaximumEventAgeInSeconds", 21600), template)),
        "OnFailure": ((config.get("DestinationConfig") or {}).get("OnFailure") or {}),
    }


@dataclass(frozen=True)
class DeadLetterQueue:
    sqs: Any
    url: str
    arn: str

    def records(self) -> list[dict[str, Any]]:
        """What is in the queue (received and made visible again at once)."""
        received = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return [json.loads(m["Body"]) for m in received.get("Messages") or []]

    def count(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def create_dead_letter_queue(sqs: Any, *, prefix: str = "clinicbot") -> DeadLetterQueue:
    """``HandoffDLQ`` as the template defines it (retention, SSE-SQS)."""
    props = _template()["Resources"]["HandoffDLQ"]["Properties"]
    url = sqs.create_queue(
        QueueName=f"{prefix}-handoff-dlq",
        Attributes={
            "MessageRetentionPeriod": str(props["MessageRetentionPeriod"]),
            "SqsManagedSseEnabled": "true" if props.get("SqsManagedSseEnabled") else "false",
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return DeadLetterQueue(sqs, url, arn)


# ------------------------------------------------------------------------------------------ async
def destination_record(
    event: dict[str, Any],
    *,
    function_arn: str,
    request_id: str,
    attempts: int,
    error: BaseException,
    condition: str = "RetriesExhausted",
) -> dict[str, Any]:
    """The on-failure record Lambda sends to an SQS destination (the Python runtime's error shape: only
    the raised exception's type, message and stack, not its cause)."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"{function_arn}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "requestId": request_id,
            "stackTrace": traceback.format_list(traceback.extract_tb(error.__traceback__)),
        },
    }


@dataclass
class Invocation:
    """One event and what became of it: ``answer`` after a success, else ``errors`` and a dead letter."""

    event: dict[str, Any]
    request_id: str
    attempts: int = 0
    answer: Any = None
    errors: list[BaseException] = field(default_factory=list)
    dead_lettered: bool = False

    @property
    def succeeded(self) -> bool:
        return self.attempts > len(self.errors)


class AsyncLambda:
    """Asynchronous invocations of one function, run in this process when asked (:meth:`run_pending`)."""

    def __init__(
        self,
        handler: Callable[[dict[str, Any]], Any] | None = None,
        *,
        function_name: str = FUNCTION_NAME,
        retry_attempts: int | None = None,
        dead_letters: DeadLetterQueue | None = None,
        region: str = "eu-central-1",
    ) -> None:
        self.handler = handler
        self.function_name = function_name
        self.retry_attempts = (
            invoke_config()["MaximumRetryAttempts"] if retry_attempts is None else retry_attempts
        )
        self.dead_letters = dead_letters
        self.function_arn = f"arn:aws:lambda:{region}:000000000000:function:{function_name}"
        self.pending: list[Invocation] = []
        self.history: list[Invocation] = []
        self._lock = threading.Lock()

    # boto3's lambda client, the part LambdaOutbox and the redrive use
    def invoke(self, *, FunctionName: str, InvocationType: str = "RequestResponse", Payload: Any = b"",
               **_: Any) -> dict[str, Any]:  # fmt: skip
        if InvocationType != "Event":
            raise ValueError("only asynchronous invocations (InvocationType='Event') are emulated")
        if FunctionName not in (self.function_name, self.function_arn):
            raise LookupError(f"ResourceNotFoundException: Function not found: {FunctionName}")
        data = Payload.read() if hasattr(Payload, "read") else Payload
        data = data.encode() if isinstance(data, str) else bytes(data or b"{}")
        if len(data) > ASYNC_PAYLOAD_LIMIT:
            raise ValueError(f"RequestEntityTooLargeException: {len(data)} bytes > {ASYNC_PAYLOAD_LIMIT}")
        event = json.loads(data)
        with self._lock:
            self.pending.append(Invocation(event=event, request_id=str(uuid.uuid4())))
        return {"StatusCode": 202, "ResponseMetadata": {"HTTPStatusCode": 202}}

    def run_pending(self, handler: Callable[[dict[str, Any]], Any] | None = None) -> list[Invocation]:
        """Run what was invoked (including what the runs invoke in turn), each event up to
        1 + ``retry_attempts`` times; what still fails goes to the dead-letter queue."""
        run = handler or self.handler
        if run is None:
            raise RuntimeError("AsyncLambda has no handler to run the events with")
        done: list[Invocation] = []
        while True:
            with self._lock:
                batch, self.pending = self.pending, []
            if not batch:
                return done
            for invocation in batch:
                self._run(invocation, run)
                done.append(invocation)
                self.history.append(invocation)

    def _run(self, invocation: Invocation, run: Callable[[dict[str, Any]], Any]) -> None:
        while invocation.attempts <= self.retry_attempts:
            invocation.attempts += 1
            try:
                invocation.answer = run(json.loads(json.dumps(invocation.event)))  # a fresh copy each time
                return
            except Exception as exc:
                invocation.errors.append(exc)
                log.info("async invocation failed (%s), attempt %d", type(exc).__name__, invocation.attempts)
        if self.dead_letters is not None:
            record = destination_record(
                invocation.event,
                function_arn=self.function_arn,
                request_id=invocation.request_id,
                attempts=invocation.attempts,
                error=invocation.errors[-1],
            )
            self.dead_letters.sqs.send_message(QueueUrl=self.dead_letters.url, MessageBody=json.dumps(record))
            invocation.dead_lettered = True
        else:
            log.warning("async invocation failed for good and there is no dead-letter queue: dropped")


# ------------------------------------------------------------------------------------------ endpoint
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


class LambdaEndpoint:
    """The Lambda ``Invoke`` API on loopback, for boto3 (``AWS_ENDPOINT_URL_LAMBDA``), over an
    :class:`AsyncLambda`. Only asynchronous invocations; no signature check (loopback only)."""

    def __init__(self, target: AsyncLambda) -> None:
        self.target = target
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LambdaEndpoint:
        target = self.target

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from urllib.parse import unquote

                match = _INVOKE_PATH.match(self.path.split("?")[0])
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if match is None:
                    return self._answer(
                        404, {"Type": "User", "message": "not the Invoke API"}, "ResourceNotFoundException"
                    )
                try:
                    target.invoke(
                        FunctionName=unquote(match["name"]),
                        InvocationType=self.headers.get("X-Amz-Invocation-Type") or "RequestResponse",
                        Payload=body,
                    )
                except LookupError as exc:
                    return self._answer(
                        404, {"Type": "User", "message": str(exc)}, "ResourceNotFoundException"
                    )
                except ValueError as exc:
                    error = (
                        "RequestTooLargeException"
                        if "TooLarge" in str(exc)
                        else "InvalidParameterValueException"
                    )
                    return self._answer(
                        413 if "TooLarge" in str(exc) else 400, {"Type": "User", "message": str(exc)}, error
                    )
                self._answer(202, None)  # fmt: skip

            def _answer(self, status: int, body: dict[str, Any] | None, error: str | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                if error:
                    self.send_header("x-amzn-ErrorType", error)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lambda-endpoint", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# ------------------------------------------------------------------------------------------ local run
def load_handoff_handler() -> Callable[[dict[str, Any]], Any]:
    """``functions/handoff/app.py``'s handler, imported on the first event (its environment set by then)."""
    handler: list[Callable[..., Any]] = []

    def run(event: dict[str, Any]) -> Any:
        from clinicbot.local.lambda_runner import LambdaContext, load_function

        if not handler:
            handler.append(load_function("handoff").handler)
        return handler[0](event, LambdaContext(function_name=FUNCTION_NAME))

    return run


@dataclass
class LocalHandoff:
    crm: FakeCrm
    dead_letters: DeadLetterQueue
    lambda_: AsyncLambda
    endpoint: LambdaEndpoint
    out: Callable[[str], None] = print
    _env: dict[str, str | None] = field(default_factory=dict, repr=False)

    @classmethod
    def start(cls, provider: str = "webhook", out: Callable[[str], None] = print) -> LocalHandoff:
        """Needs the local AWS (``start_aws``) running: creates the dead-letter queue there, starts the
        Lambda endpoint and sets the environment the webhook and the hand-off function read (the
        function's name and endpoint, CRM provider, URL and secret)."""
        import boto3

        crm = FakeCrm(on_event=lambda kind, data: out("   " + describe_event(kind, data))).start()
        sqs = boto3.client("sqs", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
        dead_letters = create_dead_letter_queue(sqs)
        target = AsyncLambda(load_handoff_handler(), dead_letters=dead_letters)
        endpoint = LambdaEndpoint(target).start()
        env = {
            "CLINICBOT_HANDOFF_FUNCTION": target.function_name,
            "AWS_ENDPOINT_URL_LAMBDA": endpoint.url,
            "CLINICBOT_CRM_PROVIDER": provider,
            "CLINICBOT_CRM_URL": crm.bitrix_url if provider == "bitrix24" else crm.webhook_url,
            "CLINICBOT_CRM_SECRET": TEST_CRM_SECRET,
        }
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        return cls(crm=crm, dead_letters=dead_letters, lambda_=target, endpoint=endpoint, out=out, _env=saved)

    def drain(self) -> list[Invocation]:
        """Run the hand-off function on every event invoked so far (retries and dead letters included)."""
        done = self.lambda_.run_pending()
        for invocation in done:
            if invocation.dead_lettered:
                self.out(f"   hand-off failed {invocation.attempts}x, in the dead-letter queue "
                         f"({type(invocation.errors[-1]).__name__}): python -m clinicbot handoff-redrive")  # fmt: skip
        return done

    def wrap(self, handler: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        """The webhook handler, followed by a run of what it invoked (after it returned: the hand-off
        function runs its own event loop, as in its own Lambda environment)."""

        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            response = handler(event, context)
            try:
                self.drain()
            except Exception:
                log.exception("the local hand-off run failed")
            return response

        return handle

    def stop(self) -> None:
        import sys

        module = sys.modules.get("clinicbot_fn_handoff")
        if module is not None:
            module.APP.close()  # its HTTP sessions, on its own event loop
        self.endpoint.stop()
        self.crm.stop()
        for name, value in self._env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
