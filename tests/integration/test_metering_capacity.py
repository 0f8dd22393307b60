"""The cost bench's DynamoDB accounting (bench/cost_month.py ``Recorder``) against moto: capacity units from the
sizes of the items each request touched, as DynamoDB bills them (moto's own ConsumedCapacity is a constant)."""

from __future__ import annotations

from typing import Any

import pytest
from bench.cost_month import Invocation, Recorder

from clinicbot.infra.template import default_table_names, table_definitions
from clinicbot.metering.capacity import TableSchema


@pytest.fixture
def recorder(aws: Any) -> Any:
    names = default_table_names()
    schemas = {
        names[lid]: TableSchema.from_definition(names[lid], d) for lid, d in table_definitions().items()
    }
    rec = Recorder(schemas)
    with rec.installed():
        yield rec


def measured(recorder: Recorder, action: Any) -> Invocation:
    inv = Invocation(fn="test", at=0.0)
    recorder.current = inv
    try:
        action()
    finally:
        recorder.current = None
    return inv


def test_writes_reads_and_index_entries_cost_what_dynamodb_bills(recorder: Recorder, aws: Any) -> None:
    big = "x" * 2500  # a 2.5 KB item: 3 write units, 1 read unit
    item = {"pk": {"S": "U#1"}, "sk": {"S": "R#1"}, "body": {"S": big}}
    put = measured(recorder, lambda: aws.put_item(TableName="clinicbot-reminder", Item=item))
    assert (put.ddb, put.wru, put.rru) == (1, 3.0, 0.0) and put.tables == {"clinicbot-reminder"}

    due = {**item, "due_bucket": {"S": "H#2026112309"}, "due_at": {"N": "1795000000"}}
    into_index = measured(recorder, lambda: aws.put_item(TableName="clinicbot-reminder", Item=due))
    assert into_index.wru == 3.0 + 3.0  # the table and the "due" index (projection ALL)

    get = measured(
        recorder,
        lambda: aws.get_item(TableName="clinicbot-reminder", Key={"pk": item["pk"], "sk": item["sk"]}),
    )
    assert get.rru == 0.5  # eventually consistent, under 4 KB

    small = measured(
        recorder,
        lambda: aws.update_item(
            TableName="clinicbot-reminder",
            Key={"pk": item["pk"], "sk": item["sk"]},
            UpdateExpression="REMOVE body, due_bucket, due_at",
        ),
    )
    assert small.wru == 3.0 + 3.0  # the larger of before and after; deleted from the index


def test_a_filtered_query_costs_the_items_evaluated(recorder: Recorder, aws: Any) -> None:
    for n in range(3):
        aws.put_item(
            TableName="clinicbot-state",
            Item={
                "pk": {"S": "USER#7"},
                "sk": {"S": f"DIALOG#{n}"},
                "blob": {"S": "y" * 3000},
                "n": {"N": str(n)},
            },
        )
    query = measured(
        recorder,
        lambda: aws.query(
            TableName="clinicbot-state",
            KeyConditionExpression="pk = :pk",
            FilterExpression="n = :zero",
            ExpressionAttributeValues={":pk": {"S": "USER#7"}, ":zero": {"N": "0"}},
        ),
    )
    assert (
        query.rru == 1.5
    )  # ~9 KB evaluated (3 x 4 KB steps, eventually consistent), not the 1 item returned


def test_a_refused_conditional_write_still_costs_a_unit(recorder: Recorder, aws: Any) -> None:
    aws.put_item(TableName="clinicbot-state", Item={"pk": {"S": "A"}, "sk": {"S": "B"}})
    refused = Invocation(fn="test", at=0.0)
    recorder.current = refused
    with pytest.raises(aws.exceptions.ConditionalCheckFailedException):
        aws.put_item(
            TableName="clinicbot-state",
            Item={"pk": {"S": "A"}, "sk": {"S": "B"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    recorder.current = None
    assert refused.wru == 1.0
