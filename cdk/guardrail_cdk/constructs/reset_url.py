"""Reset through a Lambda function URL with AWS_IAM auth: AWS verifies the SigV4-signed caller and hands its
ARN to the function (`requestContext.authorizer.iam.userArn`), which records it as the audit actor.

Who may call it is IAM: `lambda:InvokeFunctionUrl` on the reset function, granted here to the principals the
deployer names (`resetters`); others need it in their own IAM policy (same account only).
"""

from __future__ import annotations

from aws_cdk import CfnOutput
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from guardrail_cdk.constructs.function import GuardrailFunction
from guardrail_cdk.props import GuardrailProps


class ResetUrl(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: GuardrailProps, reset: GuardrailFunction) -> None:
        super().__init__(scope, construct_id)
        self.url = reset.function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
        for principal in props.resetters:
            self.url.grant_invoke_url(iam.ArnPrincipal(principal))
        CfnOutput(
            scope,
            "ResetFunctionUrl",
            value=self.url.url,
            description="On-call reset, SigV4-signed (AWS_IAM); the verified caller is the audit actor",
        )
