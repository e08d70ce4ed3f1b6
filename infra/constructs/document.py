"""The Run Command document the servers run (ssm_documents/, with the agent inlined)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import aws_ssm as ssm
from constructs import Construct


class RotationDocument(Construct):
    """`name` is the generated document name (what `DOCUMENT_NAME` and ssm:SendCommand refer to)."""

    def __init__(self, scope: Construct, construct_id: str, *, content: Mapping[str, Any]) -> None:
        super().__init__(scope, construct_id)
        self.document = ssm.CfnDocument(
            self,
            "Document",
            document_type="Command",
            document_format="JSON",
            content=dict(content),
        )
        self.name: str = self.document.ref
