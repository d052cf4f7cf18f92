"""CloudFormation custom resource: Bedrock model invocation logging to the guardrail's log group.

Deployed inline (standard library + the runtime's boto3 only). Never replaces a configuration it did not
write: another destination already set in the account and Region fails the deploy with a message.
"""

import json
import urllib.request

import boto3

DATA = {"textDataDeliveryEnabled": True, "imageDataDeliveryEnabled": False, "embeddingDataDeliveryEnabled": False}


def apply(event, client):
    props = event["ResourceProperties"]
    group = props["LogGroupName"]
    ours = {group, (event.get("OldResourceProperties") or {}).get("LogGroupName")}
    current = client.get_model_invocation_logging_configuration().get("loggingConfig") or {}
    current_group = (current.get("cloudWatchConfig") or {}).get("logGroupName")
    others = {k: v for k, v in current.items() if k == "s3Config"}
    if event["RequestType"] == "Delete":
        if current_group == group:
            if others:
                kept = {k: v for k, v in current.items() if k != "cloudWatchConfig"}
                client.put_model_invocation_logging_configuration(loggingConfig=kept)
            else:
                client.delete_model_invocation_logging_configuration()
        return
    if current and current_group not in ours:
        where = current_group or (current.get("s3Config") or {}).get("bucketName") or "unknown"
        raise RuntimeError(
            f"Bedrock invocation logging is already configured in this Region (destination {where}). "
            "Not replacing it: deploy with invocationLogs.mode=existing and its log group name."
        )
    config = {**others, **DATA, "cloudWatchConfig": {"logGroupName": group, "roleArn": props["RoleArn"]}}
    client.put_model_invocation_logging_configuration(loggingConfig=config)


def respond(event, context, status, reason=""):
    body = json.dumps(
        {
            "Status": status,
            "Reason": f"{reason} (log stream {context.log_stream_name})"[:3500],
            "PhysicalResourceId": event.get("PhysicalResourceId") or "bedrock-invocation-logging",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
        }
    ).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30):
        pass


def handler(event, context, client=None):
    try:
        apply(event, client or boto3.client("bedrock"))
    except Exception as exc:
        print(json.dumps({"error": repr(exc), "requestType": event.get("RequestType")}))
        respond(event, context, "FAILED", str(exc))
        return
    respond(event, context, "SUCCESS")
