"""Turn a synthesized CloudFormation value into what it would be once deployed (for moto runs).

Only the intrinsics the stacks use: Fn::Join, Ref (pseudo parameters), Fn::GetAtt
(function ARNs), Fn::ImportValue (the foundation's fixed exports).
"""

from __future__ import annotations

from typing import Any


class Resolver:
    def __init__(self, *, region: str, account: str, imports: dict[str, str]) -> None:
        self.region, self.account, self.imports = region, account, imports

    def function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{logical_id}"

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(self(p)) for p in parts)
        if "Ref" in value:
            pseudo = {"AWS::Partition": "aws", "AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::URLSuffix": "amazonaws.com"}
            if value["Ref"] in pseudo:
                return pseudo[value["Ref"]]
            raise KeyError(f"unresolvable Ref {value['Ref']}")
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            if attribute == "Arn":
                return self.function_arn(logical_id)
            raise KeyError(f"unresolvable GetAtt {value}")
        if "Fn::ImportValue" in value:
            return self.imports[value["Fn::ImportValue"]]
        return {k: self(v) for k, v in value.items()}
