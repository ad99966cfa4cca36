"""deploy/aws/template.yaml as data, and deployed into moto's CloudFormation.

- `load_template()` reads the template with a YAML loader that turns the short-form tags (!Ref, !Sub,
  !GetAtt, !If, ...) into their long JSON form ({"Ref": ...}, {"Fn::Sub": ...}), which is what
  CloudFormation itself does; the tests then inspect plain dicts.
- `inline_copies()` / `sync()`: the template holds copies of deploy/aws/cloud-init/*.yaml between
  `# BEGIN cloud-init/NAME` and `# END cloud-init/NAME` lines (CloudFormation needs user data inline).
  The files are the source of truth; `python tests/aws/stack_aws.py --sync` rewrites the copies.
- `deploy_stack(aws, **params)` deploys the template into moto (the `aws` fixture of conftest.py): a VPC
  and two subnets, the artifacts bucket with a stand-in release object, the AMI parameter, then
  create_stack and a poll until CREATE_COMPLETE. It returns the stack's outputs plus what it created
  around the stack. tests/aws/test_aws_loop.py deploys the same template with it.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "aws"
TEMPLATE = DEPLOY / "template.yaml"
CLOUD_INIT = DEPLOY / "cloud-init"

# The template's default AMI parameter is AWS's public /aws/service/debian/... one. moto cannot hold it:
# it refuses parameter names under /aws/ (as AWS does), ships only a few /aws/service/ trees, and resolves
# a parameter's SSM default even when a value is given. So the deployment into moto swaps that default
# for a parameter of our own, holding an AMI id that moto's EC2 knows.
AMI_PARAMETER = "/aws/service/debian/release/12/latest/amd64"
MOTO_AMI_PARAMETER = "/imgcls-test/debian-12-ami"


# ------------------------------------------------------------------------------------------ the loader
class CfnLoader(yaml.SafeLoader):
    """YAML loader for CloudFormation's short-form intrinsic functions."""


def _construct(fn: str):
    def construct(loader: CfnLoader, node: yaml.Node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if fn == "Fn::GetAtt" and isinstance(value, str):
            value = value.split(".", 1)  # !GetAtt A.B is ["A", "B"]
        if fn == "Condition":
            return {"Condition": value}
        return {fn: value}
    return construct


for _tag, _fn in {"!Ref": "Ref", "!Condition": "Condition", **{f"!{n}": f"Fn::{n}" for n in (
        "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Base64", "Join", "Select", "Split", "GetAZs",
        "ImportValue", "FindInMap", "Cidr", "Length", "ToJsonString")}}.items():
    CfnLoader.add_constructor(_tag, _construct(_fn))


def load_template(text: str | None = None) -> dict:
    return yaml.load(TEMPLATE.read_text() if text is None else text, Loader=CfnLoader)


# -------------------------------------------------------------------------------- the inline user data
_BEGIN = re.compile(r"^(\s*)# BEGIN cloud-init/(\S+)\s*$")


def _content_indent(header: str) -> int:
    # A block scalar's lines sit two columns right of the key that holds it ("Fn::Sub: |" or "- |").
    col = len(header) - len(header.lstrip())
    return col + (2 if header.lstrip().startswith("- ") else 0) + 2


def inline_copies(text: str | None = None) -> dict[str, str]:
    """{file name: the text of its copy in the template}, as YAML reads the block scalar."""
    text = TEMPLATE.read_text() if text is None else text
    lines = text.splitlines(keepends=True)
    copies = {}
    i = 0
    while i < len(lines):
        m = _BEGIN.match(lines[i])
        if not m:
            i += 1
            continue
        name = m[2]
        header = lines[i + 1]
        assert header.rstrip().endswith("|"), f"line after BEGIN {name} must open a block scalar: {header!r}"
        indent = _content_indent(header.rstrip("\n"))
        body = []
        j = i + 2
        while not lines[j].strip().startswith(f"# END cloud-init/{name}"):
            line = lines[j]
            assert not line.strip() or line.startswith(" " * indent), f"{name}: line {j + 1} is not indented by {indent}"
            body.append(line[indent:] if line.strip() else "\n")
            j += 1
        copies[name] = "".join(body)
        i = j + 1
    return copies


def sync() -> bool:
    """Rewrites the template's copies from deploy/aws/cloud-init/; True if anything changed."""
    text = TEMPLATE.read_text()
    out, lines, i = [], text.splitlines(keepends=True), 0
    while i < len(lines):
        out.append(lines[i])
        m = _BEGIN.match(lines[i])
        if not m:
            i += 1
            continue
        header = lines[i + 1]
        out.append(header)
        pad = " " * _content_indent(header.rstrip("\n"))
        out += [(pad + ln) if ln.strip() else "\n" for ln in (CLOUD_INIT / m[2]).read_text().splitlines(keepends=True)]
        i += 2
        while not lines[i].strip().startswith(f"# END cloud-init/{m[2]}"):
            i += 1
    new = "".join(out)
    if new != text:
        TEMPLATE.write_text(new)
    return new != text


# ------------------------------------------------------------------------------------ deploying to moto
DEFAULT_PARAMS = {
    "ArtifactsBucket": "imgcls-artifacts",
    "ReleaseKey": "releases/imgcls-test-linux-x86_64.tar.gz",
    "HttpCidr": "127.0.0.1/32",
}


def moto_template_body() -> str:
    """The template as JSON, with the AMI parameter's default swapped for one moto can hold (see above)."""
    tpl = load_template()
    assert tpl["Parameters"]["ImageId"]["Default"] == AMI_PARAMETER
    tpl["Parameters"]["ImageId"]["Default"] = MOTO_AMI_PARAMETER
    return json.dumps(tpl)


def _poll(what: str, check, timeout_s: float = 120.0, every_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(every_s)


def deploy_stack(aws, stack_name: str = "imgcls", timeout_s: float = 120.0, **params) -> dict:
    """Deploys deploy/aws/template.yaml into moto and returns {output key: value} plus "StackName",
    "VpcId", "WebSubnetId", "WorkerSubnetIds" (a list), "AmiId" and "StackId". `params` are template
    parameters (strings or numbers), over DEFAULT_PARAMS; the network ones are filled in unless given."""
    ec2, s3, ssm, cfn = (aws.client(s) for s in ("ec2", "s3", "ssm", "cloudformation"))

    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    azs = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    subnets = []
    for n, az in enumerate(azs):
        sn = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{n}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
        ec2.modify_subnet_attribute(SubnetId=sn, MapPublicIpOnLaunch={"Value": True})
        subnets.append(sn)

    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ssm.put_parameter(Name=MOTO_AMI_PARAMETER, Value=ami, Type="String", DataType="aws:ec2:image", Overwrite=True)

    values = {**DEFAULT_PARAMS, "VpcId": vpc, "WebSubnetId": subnets[0], "WorkerSubnetIds": ",".join(subnets),
              **{k: str(v) for k, v in params.items()}}
    # The release the user data fetches: a stand-in (nothing in moto runs the user data).
    s3.create_bucket(Bucket=values["ArtifactsBucket"])
    s3.put_object(Bucket=values["ArtifactsBucket"], Key=values["ReleaseKey"], Body=b"stand-in release")

    stack_id = cfn.create_stack(StackName=stack_name, TemplateBody=moto_template_body(),
                                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
                                Capabilities=["CAPABILITY_NAMED_IAM"])["StackId"]

    def done():
        st = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        return st if not st["StackStatus"].endswith("_IN_PROGRESS") else None

    stack = _poll(f"stack {stack_name}", done, timeout_s)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events
                   if e.get("ResourceStatusReason")]
        raise AssertionError(f"stack {stack_name} is {stack['StackStatus']}: {reasons[:10]}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return {**outputs, "StackName": stack_name, "StackId": stack_id, "VpcId": vpc, "WebSubnetId": subnets[0],
            "WorkerSubnetIds": subnets, "AmiId": ami}


if __name__ == "__main__":
    if sys.argv[1:] == ["--sync"]:
        print("template.yaml updated" if sync() else "template.yaml already matches deploy/aws/cloud-init/")
    else:
        sys.exit(f"usage: {sys.argv[0]} --sync   (copy deploy/aws/cloud-init/*.yaml into template.yaml)")
