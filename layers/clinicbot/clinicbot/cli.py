"""``clinicbot`` command line: the local run, invoking functions with sample events, deploy-time steps."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

SAMPLE_EVENTS_SECRET = "test-secret_0123456789"  # the dummy secret the events/ samples carry


def _quiet_logs() -> None:
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clinicbot.mis.demo").setLevel(logging.INFO)  # verification codes of the demo MIS


def cmd_local(args: argparse.Namespace) -> int:
    """Run the whole system on this machine: moto, the demo clinic, the webhook, a terminal chat."""
    _quiet_logs()
    from clinicbot.local.stack import LOCAL_TOKEN, local_function_env, start_aws

    stack = start_aws()
    token = os.environ.get("TELEGRAM_BOT_TOKEN")
    if token:
        from clinicbot.local.chat import poll_real_telegram
        from clinicbot.local.lambda_runner import load_function

        env = local_function_env(
            api_base=os.environ.get("TELEGRAM_API_BASE", "https://api.telegram.org"), token=token
        )
        handler = load_function("webhook").handler
        try:
            poll_real_telegram(
                handler,
                token,
                env["CLINICBOT_WEBHOOK_SECRET"],
                os.environ.get("TELEGRAM_API_BASE", "https://api.telegram.org"),
            )
        except KeyboardInterrupt:
            return 0
        finally:
            stack.stop()
        return 0

    from clinicbot.local.chat import ChatUser, TerminalChat
    from clinicbot.local.fake_botapi import FakeBotAPI
    from clinicbot.local.lambda_runner import load_function

    botapi = FakeBotAPI(token=LOCAL_TOKEN)
    botapi.start()
    env = local_function_env(api_base=botapi.base_url)
    print(f"ClinicBot local run: AWS (moto) at {stack.endpoint}, Telegram stand-in at {botapi.base_url}")
    handoff = None
    if getattr(args, "crm", "none") != "none":  # a CRM stand-in on loopback + the hand-off function
        from clinicbot.local.handoff_runner import LocalHandoff

        handoff = LocalHandoff.start(provider=args.crm)
        print(f"CRM stand-in ({args.crm}, Standard Webhooks signatures checked) at {handoff.crm.base_url}")
    print("Starting the webhook function (cold start: importing aiogram takes a few seconds)…", flush=True)
    handler = load_function("webhook").handler
    if handoff is not None:
        handler = handoff.wrap(handler)  # after each update the queued hand-offs go through the function
    user = ChatUser(language_code=args.lang, phone=args.phone)
    chat = TerminalChat(handler=handler, botapi=botapi, secret=env["CLINICBOT_WEBHOOK_SECRET"], user=user)
    try:
        chat.run()
    except KeyboardInterrupt:
        pass
    finally:
        if handoff is not None:
            handoff.stop()
        botapi.stop()
        stack.stop()
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    """Invoke one function with one event, locally, printing the response and the Bot API calls."""
    _quiet_logs()
    from clinicbot.local.fake_botapi import FakeBotAPI
    from clinicbot.local.lambda_runner import invoke
    from clinicbot.local.stack import LOCAL_TOKEN, local_function_env, start_aws

    event: dict[str, Any] = json.loads(Path(args.event).read_text(encoding="utf-8"))
    stack = start_aws()
    botapi = FakeBotAPI(token=LOCAL_TOKEN)
    botapi.start()
    # The function expects the deployment's secret, never the event's own: a forged event must fail.
    secret = args.secret or os.environ.get("CLINICBOT_WEBHOOK_SECRET") or SAMPLE_EVENTS_SECRET
    os.environ["CLINICBOT_WEBHOOK_SECRET"] = secret
    local_function_env(api_base=botapi.base_url)
    status = 0
    try:
        try:
            response = invoke(args.function, event)
        except Exception as exc:  # Lambda's answer to an unhandled error (asynchronous events: a retry)
            error = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            print(json.dumps({"error": error}, ensure_ascii=False, indent=2))
            status = 1
        else:
            print(json.dumps({"response": _readable(response)}, ensure_ascii=False, indent=2))
        calls = [{"method": c.method, "params": c.params} for c in botapi.calls]
        print(json.dumps({"bot_api_calls": calls}, ensure_ascii=False, indent=2, default=str))
    finally:
        botapi.stop()
        stack.stop()
    return status


def _readable(response: Any) -> Any:
    if isinstance(response, dict) and isinstance(response.get("body"), str):
        try:
            return {**response, "body": json.loads(response["body"])}
        except ValueError:
            return response
    return response


def cmd_set_commands(args: argparse.Namespace) -> int:
    """Deploy-time step: publish the bot's command menu in Russian (default) and English."""
    from clinicbot.config import load_settings
    from clinicbot.telegram.commands import publish_commands

    publish_commands(load_settings())
    print("setMyCommands: published for the default (ru) and en")
    return 0


def cmd_handoff_redrive(args: argparse.Namespace) -> int:
    """After a fix: invoke the hand-off function again with each message of its dead-letter queue."""
    import boto3

    from clinicbot.handoff.redrive import Outcome, redrive

    queue_url, function = args.dlq_url, args.function
    if args.stack:
        outputs = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        found = {o["OutputKey"]: o["OutputValue"] for o in outputs.get("Outputs") or []}
        queue_url = queue_url or found.get("HandoffDeadLetterQueueUrl")
        function = function or found.get("HandoffFunctionName")
    if not queue_url or not function:
        print("handoff-redrive needs --dlq-url and --function (or --stack NAME)", file=sys.stderr)
        return 2
    report = redrive(
        boto3.client("sqs"),
        boto3.client("lambda"),
        queue_url=queue_url,
        function_name=function,
        dry_run=args.dry_run,
        limit=args.limit,
        on_result=lambda letter, outcome: print(f"{outcome.value:<10} {letter.describe()}", flush=True),
    )
    print(("dry run: " if args.dry_run else "") + report.summary())
    return 1 if report.count(Outcome.FAILED) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clinicbot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help=cmd_local.__doc__)
    local.add_argument("--lang", default="ru", help="language your Telegram reports (ru, en)")
    local.add_argument("--phone", default="+7 916 000-11-22", help="the phone your contact shares")
    local.add_argument(
        "--crm",
        default="webhook",
        choices=["webhook", "bitrix24", "none"],
        help="the local CRM stand-in hand-offs go to (default: a signed webhook receiver; none: no hand-off)",
    )
    local.set_defaults(func=cmd_local)
    inv = sub.add_parser("invoke", help=cmd_invoke.__doc__)
    inv.add_argument("function", help="a folder of functions/, e.g. webhook")
    inv.add_argument("event", help="an event file, e.g. events/webhook/start.json")
    inv.add_argument(
        "--secret", help=f"webhook secret the function expects (default: the samples' {SAMPLE_EVENTS_SECRET})"
    )
    inv.set_defaults(func=cmd_invoke)
    cmds = sub.add_parser("set-commands", help=cmd_set_commands.__doc__)
    cmds.set_defaults(func=cmd_set_commands)
    redrive = sub.add_parser("handoff-redrive", help=cmd_handoff_redrive.__doc__)
    redrive.add_argument(
        "--dlq-url",
        default=os.environ.get("CLINICBOT_HANDOFF_DLQ_URL"),
        help="the HandoffDeadLetterQueueUrl output (default: $CLINICBOT_HANDOFF_DLQ_URL)",
    )
    redrive.add_argument(
        "--function",
        default=os.environ.get("CLINICBOT_HANDOFF_FUNCTION"),
        help="the HandoffFunctionName output (default: $CLINICBOT_HANDOFF_FUNCTION)",
    )
    redrive.add_argument("--stack", help="read both from this CloudFormation stack's outputs")
    redrive.add_argument("--dry-run", action="store_true", help="list the messages, change nothing")
    redrive.add_argument("--limit", type=int, default=None, help="at most this many messages")
    redrive.set_defaults(func=cmd_handoff_redrive)
    from clinicbot.engagement.cli import add_commands as add_engagement_commands

    add_engagement_commands(sub)  # feedback-report, broadcast, broadcast-run
    from clinicbot.metering.cli import add_commands as add_metering_commands

    add_metering_commands(sub)  # usage --month YYYY-MM
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
