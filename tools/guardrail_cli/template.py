"""Read template.yaml the way CloudFormation would, for the local stand-in account.

Only what the local path needs: parameters (defaults, overrides), conditions, the
intrinsic functions the template uses, the functions with their environment, and the
EventBridge rules with their patterns. Nothing here is hand-copied from the template:
change a pattern there and the local path changes with it.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
NO_VALUE = object()


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML loader that turns short-form intrinsics (!Ref, !Sub, ...) into their long form."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


_parsed: dict[tuple[str, int, int], dict[str, Any]] = {}  # (path, mtime, size) -> template


def load_yaml(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as data; parsed once per file version (replay builds a stack per event)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _parsed:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_CfnLoader)
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a CloudFormation template")
        _parsed[key] = data
    return copy.deepcopy(_parsed[key])


@dataclass(frozen=True)
class Rule:
    logical_id: str  # the SAM event name, e.g. "AdminAccessChange"
    function: str  # logical id of the target function
    pattern: dict[str, Any]
    name: str = ""  # the rule's name in EventBridge (RuleName)
    state: str = "ENABLED"  # ENABLED, DISABLED or ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    code_uri: Path
    handler: str  # "app.lambda_handler"
    environment: dict[str, str]
    role: str  # logical id of its role
    timeout: int
    memory: int

    @property
    def module_path(self) -> Path:
        return self.code_uri / (self.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass
class Stack:
    """The template resolved for one account, region, stack name and parameter set."""

    account_id: str = "123456789012"
    region: str = "us-east-1"
    stack_name: str = "account-guardrail"
    parameters: dict[str, str] = field(default_factory=dict)
    path: Path = TEMPLATE_PATH

    def __post_init__(self) -> None:
        self.template = load_yaml(self.path)
        self.params = self._parameters(self.parameters)
        self.conditions: dict[str, bool] = {}
        for name in self.template.get("Conditions", {}):
            self.condition(name)

    # -- parameters and conditions ------------------------------------------------------

    def _parameters(self, overrides: Mapping[str, str]) -> dict[str, str]:
        declared = self.template.get("Parameters", {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise ValueError(f"unknown parameters: {sorted(unknown)}")
        values = {}
        for name, spec in declared.items():
            value = overrides.get(name, spec.get("Default"))
            if value is None:
                value = "owner@example.com" if name == "AlertEmail" else ""
            value = str(value)
            allowed = spec.get("AllowedValues")
            if allowed and value not in [str(a) for a in allowed]:
                raise ValueError(f"parameter {name}={value!r} is not one of {allowed}")
            pattern = spec.get("AllowedPattern")
            if pattern and not re.fullmatch(pattern, value):
                raise ValueError(f"parameter {name}={value!r}: {spec.get('ConstraintDescription', pattern)}")
            values[name] = value
        return values

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    # -- resources --------------------------------------------------------------------------

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.template.get("Resources", {}))

    def _name_of(self, logical_id: str) -> str:
        props = self.resources[logical_id].get("Properties", {})
        for key in ("FunctionName", "RoleName", "TopicName", "TableName", "QueueName",
                    "ManagedPolicyName", "LogGroupName", "LayerName"):
            if key in props:
                return str(self.resolve(props[key]))
        return f"{self.stack_name}-{logical_id}"

    def ref(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        kind = resource["Type"]
        name = self._name_of(logical_id)
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{self.region}:{self.account_id}:{name}"
        if kind == "AWS::IAM::ManagedPolicy":
            return f"arn:aws:iam::{self.account_id}:policy/{name}"
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}"
        if kind == "AWS::Serverless::LayerVersion":
            return f"arn:aws:lambda:{self.region}:{self.account_id}:layer:{name}:1"
        if kind == "AWS::KMS::Key":
            return "00000000-0000-0000-0000-000000000000"
        return name

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.resources[logical_id]
        kind = resource["Type"]
        name = self._name_of(logical_id)
        if attribute == "QueueName":
            return name
        if attribute != "Arn":
            raise ValueError(f"unsupported attribute {logical_id}.{attribute}")
        if kind == "AWS::IAM::Role":
            path = str(self.resolve(resource.get("Properties", {}).get("Path", "/")))
            return f"arn:aws:iam::{self.account_id}:role{path}{name}"
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"
        if kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{self.region}:{self.account_id}:table/{name}"
        if kind == "AWS::Serverless::Function":
            return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        if kind == "AWS::KMS::Key":
            return f"arn:aws:kms:{self.region}:{self.account_id}:key/{self.ref(logical_id)}"
        return self.ref(logical_id)

    # -- intrinsic functions -----------------------------------------------------------------

    def _pseudo(self, name: str) -> Any:
        return {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }[name]

    def _ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self._pseudo(name)
        if name in self.params:
            if self.template["Parameters"][name].get("Type") == "CommaDelimitedList":
                return [part.strip() for part in self.params[name].split(",")]  # as CloudFormation: "" -> [""]
            return self.params[name]
        return self.ref(name)

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in variables:
                return str(self.resolve(variables[token]))
            if "." in token and not token.startswith("AWS::"):
                logical_id, attribute = token.split(".", 1)
                return self.get_att(logical_id, attribute)
            return str(self._ref(token))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, node: Any) -> Any:
        """Evaluate intrinsics; AWS::NoValue entries disappear."""
        if isinstance(node, list):
            return [v for v in (self.resolve(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self._ref(value)
            if key == "Condition" and isinstance(value, str):
                return self.condition(value)
            if key == "Fn::Sub":
                if isinstance(value, list):
                    return self._sub(value[0], value[1])
                return self._sub(value, {})
            if key == "Fn::GetAtt":
                return self.get_att(value[0], value[1])
            if key == "Fn::Join":
                return str(value[0]).join(str(v) for v in self.resolve(value[1]))
            if key == "Fn::If":
                return self.resolve(value[1] if self.condition(value[0]) else value[2])
            if key == "Fn::Equals":
                left, right = self.resolve(value)
                return str(left) == str(right)
            if key == "Fn::And":
                return all(self.resolve(value))
            if key == "Fn::Or":
                return any(self.resolve(value))
            if key == "Fn::Not":
                return not self.resolve(value)[0]
            if key == "Fn::Select":
                return self.resolve(value[1])[int(self.resolve(value[0]))]
            if key == "Fn::Split":
                return str(self.resolve(value[1])).split(value[0])
        out = {}
        for key, value in node.items():
            resolved = self.resolve(value)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    # -- what the local path runs ----------------------------------------------------------

    def functions(self) -> dict[str, Function]:
        globals_ = self.template.get("Globals", {}).get("Function", {})
        global_env = self.resolve(globals_.get("Environment", {}).get("Variables", {}))
        out = {}
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            props = resource.get("Properties", {})
            env = dict(global_env)
            env.update(self.resolve(props.get("Environment", {}).get("Variables", {})))
            role = props.get("Role", {}).get("Fn::GetAtt", [""])[0]
            out[logical_id] = Function(
                logical_id=logical_id,
                name=str(self.resolve(props.get("FunctionName", logical_id))),
                code_uri=self._code_dir(str(props["CodeUri"])),
                handler=str(props["Handler"]),
                environment={k: str(v) for k, v in env.items()},
                role=role,
                timeout=int(self.resolve(props.get("Timeout", globals_.get("Timeout", 3)))),
                memory=int(self.resolve(props.get("MemorySize", globals_.get("MemorySize", 128)))),
            )
        return out

    def _code_dir(self, code_uri: str) -> Path:
        """CodeUri beside the template; for a template copied elsewhere (a variant to try
        locally), the repository's code when the copy has none of its own."""
        beside = self.path.parent / code_uri
        if not beside.exists() and (REPO_ROOT / code_uri).exists():
            return REPO_ROOT / code_uri
        return beside

    def rules(self) -> list[Rule]:
        """Every EventBridge rule (SAM EventBridgeRule/CloudWatchEvent events) with its pattern."""
        out = []
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            for event_id, event in resource.get("Properties", {}).get("Events", {}).items():
                if event.get("Type") in ("EventBridgeRule", "CloudWatchEvent"):
                    props = event["Properties"]
                    pattern = self.resolve(props["Pattern"])
                    name = str(self.resolve(props.get("RuleName", f"{self.stack_name}-{logical_id}{event_id}")))
                    state = str(self.resolve(props.get("State", "ENABLED")))
                    out.append(Rule(event_id, logical_id, json.loads(json.dumps(pattern)), name, state))
        return out

    def schedules(self) -> dict[str, str]:
        """Scheduled events: function logical id -> schedule expression."""
        out = {}
        for logical_id, resource in self.resources.items():
            for event in resource.get("Properties", {}).get("Events", {}).values() \
                    if resource.get("Type") == "AWS::Serverless::Function" else []:
                if event.get("Type") in ("Schedule", "ScheduleV2"):
                    out[logical_id] = str(self.resolve(event["Properties"]["ScheduleExpression"]))
        return out

    def role_statements(self, role_logical_id: str) -> list[dict[str, Any]]:
        """Every statement a role is granted: inline policies and managed policies from this template."""
        props = self.resolve(self.resources[role_logical_id].get("Properties", {}))
        statements: list[dict[str, Any]] = []
        for policy in props.get("Policies", []):
            statements += policy["PolicyDocument"]["Statement"]
        managed_arns = set(props.get("ManagedPolicyArns", []))
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != "AWS::IAM::ManagedPolicy":
                continue
            # Attached by the role (ManagedPolicyArns) or by the policy (its Roles list).
            attached_here = {"Ref": role_logical_id} in resource["Properties"].get("Roles", [])
            if self.ref(logical_id) in managed_arns or attached_here:
                doc = self.resolve(resource["Properties"]["PolicyDocument"])
                statements += doc["Statement"]
        return statements
