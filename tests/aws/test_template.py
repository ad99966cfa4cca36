"""deploy/aws/template.yaml, checked offline: cfn-lint, the template's structure (what moto's
CloudFormation accepts without creating: the alarms and scaling policies, the warm pool, bucket policies,
metrics collection), the user data against deploy/aws/cloud-init/ and the user-data contract, the
release tarball, and a deployment into moto's CloudFormation on 127.0.0.1 (never real AWS).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from stack_aws import (AMI_PARAMETER, CLOUD_INIT, DEPLOY, REPO, TEMPLATE, deploy_stack, inline_copies,
                       load_template)

ROLES = ("worker", "web", "scaler")
GROUP_ARN_SUFFIX = ":autoScalingGroupName/${AWS::StackName}-workers"


@pytest.fixture(scope="module")
def tpl() -> dict:
    return load_template()


def res(tpl, kind: str) -> dict:
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] == kind}


def ref(name: str) -> dict:
    return {"Ref": name}


# -------------------------------------------------------------------------- a small Fn::Sub / Fn::If
# Just enough of CloudFormation's evaluation to read the user data as an instance would get it.
SUB_VALUES = {
    "AWS::Region": "us-east-1", "AWS::StackName": "imgcls", "AWS::AccountId": "123456789012",
    "RequestQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/imgcls-requests",
    "ResponseQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/imgcls-responses",
    "InputBucket": "imgcls-inputbucket-x", "OutputBucket": "imgcls-outputbucket-y",
    "ArtifactsBucket": "artifacts", "ReleaseKey": "releases/imgcls-1-linux-x86_64.tar.gz",
    "WebPort": "80", "WorkerThreads": "2", "WorkerPrecision": "fp32", "VisibilityTimeout": "30", "WarmPool": "false",
    "MinWorkers": "1", "MaxWorkers": "19", "ControllerPolicy": "backlog", "MetricsNamespace": "imgcls",
}


def evaluate(node, conditions: dict[str, bool], values: dict = SUB_VALUES):
    if isinstance(node, dict) and len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            local = {**values, **{k: evaluate(v, conditions, values) for k, v in extra.items()}}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(local[m[1]]), text)
        if fn == "Fn::If":
            return evaluate(arg[1] if conditions[arg[0]] else arg[2], conditions, values)
        if fn == "Fn::Base64":
            return evaluate(arg, conditions, values)
        if fn == "Ref":
            return values[arg]
    return node


def user_data(tpl, which: str, controller: bool) -> dict:
    node = (tpl["Resources"]["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
            if which == "worker" else tpl["Resources"]["WebInstance"]["Properties"]["UserData"])
    text = evaluate(node, {"ControllerMode": controller, "AlarmMode": not controller, "UseWarmPool": False})
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def env_files(cloud_config: dict) -> dict[str, dict[str, str]]:
    """{role: {IMGCLS_NAME: value}} of the /etc/imgcls/<role>.env entries, checking the contract's
    plain KEY=value syntax (no quotes, no export, nothing left to substitute) on the way."""
    found = {}
    for entry in cloud_config["write_files"]:
        m = re.fullmatch(r"/etc/imgcls/(\w+)\.env", entry["path"])
        if not m:
            continue
        env = {}
        for line in entry["content"].splitlines():
            assert re.fullmatch(r"IMGCLS_[A-Z0-9_]+=[^\s'\"$]+", line), f"{entry['path']}: {line!r}"
            k, v = line.split("=", 1)
            env[k] = v
        found[m[1]] = env
    return found


# ------------------------------------------------------------------------------------------ lint, sync
def test_cfn_lint_is_clean():
    lint = REPO / ".venv" / "bin" / "cfn-lint"
    if not lint.exists():
        lint = shutil.which("cfn-lint")
    assert lint, "cfn-lint is missing: make build creates .venv from tools/requirements.txt"
    r = subprocess.run([str(lint), str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_inline_user_data_is_the_cloud_init_files():
    copies = inline_copies()
    assert sorted(copies) == sorted(p.name for p in CLOUD_INIT.glob("*.yaml"))
    for name, text in copies.items():
        assert text == (CLOUD_INIT / name).read_text(), (
            f"template.yaml's copy of cloud-init/{name} differs from the file: run "
            f"`.venv/bin/python tests/aws/stack_aws.py --sync`")
    # The copies sit where the template uses them.
    r = load_template()["Resources"]
    assert r["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"] == {
        "Fn::Base64": {"Fn::Sub": copies["worker.yaml"]}}
    web = r["WebInstance"]["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    assert web[0] == copies["web.yaml"]
    assert web[1] == {"ScalerFiles": {"Fn::If": ["ControllerMode", {"Fn::Sub": copies["scaler.yaml"]}, ""]}}


def test_the_user_data_fits_and_substitutes_only_what_exists(tpl):
    for name, text in inline_copies().items():
        # EC2 takes at most 16 KiB of user data before base64.
        assert len(text.encode()) < 12 * 1024, name
        names = set(re.findall(r"\$\{([^}!]+)\}", text))
        known = set(tpl["Parameters"]) | set(tpl["Resources"]) | {"AWS::Region", "AWS::StackName", "ScalerFiles"}
        assert names <= known, f"{name} substitutes unknown names {names - known}"


# ------------------------------------------------------------------------------------------- user data
@pytest.mark.parametrize("controller", [True, False], ids=["controller", "alarm"])
def test_env_files_follow_the_user_data_contract(tpl, controller):
    worker = env_files(user_data(tpl, "worker", controller))
    assert list(worker) == ["worker"]
    w = worker["worker"]
    assert w["IMGCLS_QUEUE"] == SUB_VALUES["RequestQueue"]
    assert w["IMGCLS_IN_BUCKET"] == "s3://imgcls-inputbucket-x"
    assert w["IMGCLS_OUT_BUCKET"] == "s3://imgcls-outputbucket-y"
    assert w["IMGCLS_FLEET"] == "asg://imgcls-workers"
    assert w["IMGCLS_MODEL"] == "/opt/imgcls/share/imgcls/mobilenet_v2.imgw"
    assert {"IMGCLS_THREADS", "IMGCLS_VISIBILITY"} <= set(w) and w["IMGCLS_PRECISION"] == "fp32"

    web = env_files(user_data(tpl, "web", controller))
    assert sorted(web) == (["scaler", "web"] if controller else ["web"])
    assert web["web"] == {"IMGCLS_PORT": "80", "IMGCLS_BIND": "0.0.0.0", "IMGCLS_QUEUE": SUB_VALUES["RequestQueue"],
                          "IMGCLS_REPLY_QUEUE": SUB_VALUES["ResponseQueue"],
                          "IMGCLS_IN_BUCKET": "s3://imgcls-inputbucket-x",
                          "IMGCLS_OUT_BUCKET": "s3://imgcls-outputbucket-y"}
    if controller:
        assert web["scaler"] == {"IMGCLS_QUEUE": SUB_VALUES["RequestQueue"], "IMGCLS_FLEET": "asg://imgcls-workers",
                                 "IMGCLS_MIN_WORKERS": "1", "IMGCLS_MAX_WORKERS": "19", "IMGCLS_POLICY": "backlog",
                                 "IMGCLS_CLOUDWATCH_NAMESPACE": "imgcls"}
    # The user data's group name is the group's explicit name (no !Ref back: that would be a cycle).
    assert tpl["Resources"]["WorkerGroup"]["Properties"]["AutoScalingGroupName"] == {
        "Fn::Sub": "${AWS::StackName}-workers"}


@pytest.mark.parametrize("role", ROLES)
def test_units_run_the_installed_binary_with_the_env_file(role):
    unit = (DEPLOY / "systemd" / f"imgcls-{role}.service").read_text()
    lines = [ln.strip() for ln in unit.splitlines()]
    assert f"ExecStart=/opt/imgcls/bin/imgcls {role}" in lines
    assert f"EnvironmentFile=/etc/imgcls/{role}.env" in lines
    if shutil.which("systemd-analyze"):
        # Only the syntax: the binary and env file are not installed here.
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(DEPLOY / "systemd" / f"imgcls-{role}.service")],
                           capture_output=True, text=True, timeout=60)
        bad = [ln for ln in r.stderr.splitlines() if "Unknown key" in ln or "Invalid" in ln or "parse" in ln.lower()]
        assert not bad, r.stderr


def test_runcmd_installs_without_compiler_git_or_tokens(tpl):
    for which in ("worker", "web"):
        cc = user_data(tpl, which, controller=True)
        script = "\n".join(c if isinstance(c, str) else " ".join(c) for c in cc["runcmd"])
        assert "aws s3 cp" in script and "s3://artifacts/releases/imgcls-1-linux-x86_64.tar.gz" in script
        assert "-C /opt/imgcls --strip-components=1" in script
        assert f"imgcls-{which}.service" in script and "systemctl" in script
        for banned in ("git ", "gcc", "cmake", "make ", "build-essential", "AWS_SECRET", "AKIA", "token"):
            assert banned not in script, f"{which}: {banned!r} in runcmd"
        assert not [p for p in cc["packages"] if p.endswith("-dev") or p in ("gcc", "git", "cmake", "make")]


def _needed_packages(binary: Path) -> set[str]:
    out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    pkgs = set()
    for lib in re.findall(r"\(NEEDED\).*\[(.+)\]", out):
        path = next(ln.split("=> ")[1] for ln in cache.splitlines()
                    if ln.strip().startswith(lib + " ") and "x86-64" in ln)
        r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if r.returncode:
            r = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True, check=True)
        pkgs.add(r.stdout.split(":")[0])
    return pkgs


def test_the_packages_cover_every_library_the_binary_links(tpl):
    lists = [user_data(tpl, w, True)["packages"] for w in ("worker", "web")]
    assert lists[0] == lists[1], "worker.yaml and web.yaml install different packages"
    assert "awscli" in lists[0]
    binary = REPO / "build" / "imgcls"
    if not binary.exists() or not all(map(shutil.which, ("readelf", "dpkg", "ldconfig"))):
        pytest.skip("needs build/imgcls, readelf, ldconfig and dpkg (Debian)")
    missing = _needed_packages(binary) - set(lists[0])
    assert not missing, f"build/imgcls links libraries from {sorted(missing)}, which the user data does not install"


# --------------------------------------------------------------------------------------------- structure
def test_the_group_bounds_are_parameters_1_to_19(tpl):
    p = tpl["Parameters"]
    assert (p["MinWorkers"]["Type"], p["MinWorkers"]["Default"]) == ("Number", 1)
    assert (p["MaxWorkers"]["Type"], p["MaxWorkers"]["Default"]) == ("Number", 19)
    g = tpl["Resources"]["WorkerGroup"]["Properties"]
    assert g["MinSize"] == ref("MinWorkers") and g["MaxSize"] == ref("MaxWorkers")
    assert g["LaunchTemplate"]["LaunchTemplateId"] == ref("WorkerLaunchTemplate")
    assert g["VPCZoneIdentifier"] == ref("WorkerSubnetIds")
    assert "DesiredCapacity" not in g  # an update must not reset what the scaler set
    collected = {m for mc in g["MetricsCollection"] for m in mc["Metrics"]}
    assert {"GroupDesiredCapacity", "GroupInServiceInstances"} <= collected


def test_queues_have_dead_letter_queues_after_5_receives(tpl):
    r = tpl["Resources"]
    for q, dlq in (("RequestQueue", "RequestDeadLetterQueue"), ("ResponseQueue", "ResponseDeadLetterQueue")):
        assert r[q]["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                                                      "maxReceiveCount": 5}
        assert r[dlq]["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" not in r[dlq]["Properties"]
    assert r["RequestQueue"]["Properties"]["VisibilityTimeout"] == ref("VisibilityTimeout")


def test_imdsv2_is_required_everywhere(tpl):
    r = tpl["Resources"]
    for opts in (r["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["MetadataOptions"],
                 r["WebInstance"]["Properties"]["MetadataOptions"]):
        assert opts["HttpTokens"] == "required" and opts["HttpEndpoint"] == "enabled"
        assert opts["HttpPutResponseHopLimit"] in (1, 2)


def test_buckets_are_encrypted_private_and_tls_only(tpl):
    buckets = res(tpl, "AWS::S3::Bucket")
    assert sorted(buckets) == ["InputBucket", "OutputBucket"]
    policies = {v["Properties"]["Bucket"]["Ref"]: v for v in res(tpl, "AWS::S3::BucketPolicy").values()}
    for name, b in buckets.items():
        p = b["Properties"]
        rules = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules and all(r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms") for r in rules)
        assert p["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        (deny,) = policies[name]["Properties"]["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_claim_checks_expire_after_a_day_and_nothing_else_does(tpl):
    rules = tpl["Resources"]["InputBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if "ExpirationInDays" in r or "ExpirationDate" in r]
    assert expiring == [{"Id": "expire-claim-checks", "Status": "Enabled", "Prefix": ".imgcls/claims/",
                         "ExpirationInDays": 1}]
    out = tpl["Resources"]["OutputBucket"]["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
    assert not [r for r in out if "ExpirationInDays" in r or "ExpirationDate" in r]


def test_the_ami_is_debian_12_from_the_public_ssm_parameter(tpl):
    p = tpl["Parameters"]["ImageId"]
    assert p == {**p, "Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": AMI_PARAMETER}
    r = tpl["Resources"]
    assert r["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["ImageId"] == ref("ImageId")
    assert r["WebInstance"]["Properties"]["ImageId"] == ref("ImageId")


def test_the_web_port_is_open_to_the_cidr_parameter_only(tpl):
    r = tpl["Resources"]
    (rule,) = r["WebSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert rule["CidrIp"] == ref("HttpCidr") and rule["FromPort"] == rule["ToPort"] == ref("WebPort")
    assert "SecurityGroupIngress" not in r["WorkerSecurityGroup"]["Properties"]
    assert r["WebInstance"]["Properties"]["SubnetId"] == ref("WebSubnetId")


# --------------------------------------------------------------------------------------------------- IAM
def statements(tpl):
    """(role, statement) for every statement of every inline policy of a role and of every
    AWS::IAM::Policy attached to one."""
    def docs():
        for name, role in res(tpl, "AWS::IAM::Role").items():
            for pol in role["Properties"].get("Policies", []):
                yield name, pol["PolicyDocument"]
        for pol in res(tpl, "AWS::IAM::Policy").values():
            for r in pol["Properties"]["Roles"]:
                yield r["Ref"], pol["Properties"]["PolicyDocument"]
    for name, doc in docs():
        for st in doc["Statement"]:
            assert "Fn::If" not in st, "moto's CloudFormation cannot take a conditional statement"
            yield name, st


def aslist(x):
    return x if isinstance(x, list) else [x]


def test_no_wildcard_iam(tpl):
    allowed_on_star = {"autoscaling:DescribeAutoScalingGroups", "cloudwatch:PutMetricData"}
    sts = list(statements(tpl))
    assert sts
    for role, st in sts:
        assert st["Effect"] == "Allow"
        actions = aslist(st["Action"])
        assert not [a for a in actions if a == "*" or a.endswith(":*") or "*" in a], (role, st)
        if "*" in aslist(st["Resource"]):
            assert set(actions) <= allowed_on_star, (role, st)
        if "cloudwatch:PutMetricData" in actions:
            assert st["Condition"] == {"StringEquals": {"cloudwatch:namespace": ref("MetricsNamespace")}}
    for st in (s for p in res(tpl, "AWS::S3::BucketPolicy").values() for s in p["Properties"]["PolicyDocument"]["Statement"]):
        assert st["Effect"] == "Deny"  # the only s3:* is a deny (TLS only)


def grants(tpl, role: str) -> dict[str, set]:
    """{action: {resource as a JSON string}} of one role's statements."""
    g: dict[str, set] = {}
    for name, st in statements(tpl):
        if name == role:
            for a in aslist(st["Action"]):
                g.setdefault(a, set()).update(json.dumps(r, sort_keys=True) for r in aslist(st["Resource"]))
    return g


def arn(resource):
    return json.dumps({"Fn::GetAtt": [resource, "Arn"]}, sort_keys=True)


def objects(bucket):
    return json.dumps({"Fn::Sub": f"${{{bucket}.Arn}}/*"}, sort_keys=True)


def test_each_tier_gets_the_calls_it_makes_on_its_own_resources(tpl):
    release = json.dumps({"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtifactsBucket}/${ReleaseKey}"})
    w = grants(tpl, "WorkerRole")
    for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"):
        assert w[a] == {arn("RequestQueue")}, a
    assert w["sqs:SendMessage"] == {arn("ResponseQueue")}
    assert w["s3:DeleteObject"] == {objects("InputBucket")}
    assert w["s3:PutObject"] == {objects("InputBucket"), objects("OutputBucket")}
    assert w["s3:GetObject"] == {objects("InputBucket"), objects("OutputBucket"), release}
    assert w["s3:ListBucket"] == {arn("InputBucket"), arn("OutputBucket")}
    (group,) = w["autoscaling:SetInstanceProtection"]
    assert json.loads(group)["Fn::Sub"].endswith(GROUP_ARN_SUFFIX)

    web = grants(tpl, "WebRole")
    assert web["sqs:SendMessage"] == {arn("RequestQueue")}
    assert web["sqs:GetQueueAttributes"] == {arn("RequestQueue"), arn("ResponseQueue")}
    for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert web[a] == {arn("ResponseQueue")}, a
    assert web["s3:PutObject"] == {objects("InputBucket")}
    assert web["s3:GetObject"] == {objects("OutputBucket"), release}
    assert web["autoscaling:DescribeAutoScalingGroups"] == {'"*"'}
    (group,) = web["autoscaling:SetDesiredCapacity"]
    assert json.loads(group)["Fn::Sub"].endswith(GROUP_ARN_SUFFIX)
    assert web["cloudwatch:PutMetricData"] == {'"*"'}
    assert set(w) == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                      "sqs:GetQueueAttributes", "sqs:SendMessage", "s3:GetObject", "s3:PutObject",
                      "s3:DeleteObject", "s3:ListBucket", "autoscaling:SetInstanceProtection",
                      "autoscaling:CompleteLifecycleAction"}  # nothing else
    # The scaler's grants exist only in controller mode, the lifecycle hook's only with a warm pool.
    r = tpl["Resources"]
    assert (r["ScalerPolicy"]["Condition"], r["ScalerPolicy"]["Properties"]["Roles"]) == ("ControllerMode", [ref("WebRole")])
    assert {a for st in r["ScalerPolicy"]["Properties"]["PolicyDocument"]["Statement"] for a in aslist(st["Action"])} == {
        "autoscaling:DescribeAutoScalingGroups", "autoscaling:SetDesiredCapacity", "cloudwatch:PutMetricData"}
    assert (r["WorkerWarmPoolPolicy"]["Condition"], r["WorkerWarmPoolPolicy"]["Properties"]["Roles"]) == (
        "UseWarmPool", [ref("WorkerRole")])
    assert set(res(tpl, "AWS::IAM::Policy")) == {"ScalerPolicy", "WorkerWarmPoolPolicy"}


def test_instance_profiles_carry_the_roles(tpl):
    r = tpl["Resources"]
    assert r["WorkerInstanceProfile"]["Properties"]["Roles"] == [ref("WorkerRole")]
    assert r["WebInstanceProfile"]["Properties"]["Roles"] == [ref("WebRole")]
    assert r["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["IamInstanceProfile"] == {
        "Arn": {"Fn::GetAtt": ["WorkerInstanceProfile", "Arn"]}}
    assert r["WebInstance"]["Properties"]["IamInstanceProfile"] == ref("WebInstanceProfile")


# ----------------------------------------------------------------------------------------------- scaling
def step_adjustment(policy: dict, alarm: dict, value: float) -> int | None:
    """What EC2 Auto Scaling does for a metric value when the alarm fires: the step whose interval
    holds value - threshold (above the threshold lower bounds are inclusive and upper exclusive; below
    it the reverse)."""
    p, a = policy["Properties"], alarm["Properties"]
    breach = {"GreaterThanThreshold": value > a["Threshold"], "GreaterThanOrEqualToThreshold": value >= a["Threshold"],
              "LessThanThreshold": value < a["Threshold"], "LessThanOrEqualToThreshold": value <= a["Threshold"]}
    if not breach[a["ComparisonOperator"]]:
        return None
    d = value - a["Threshold"]
    for s in p["StepAdjustments"]:
        lo, hi = s.get("MetricIntervalLowerBound", float("-inf")), s.get("MetricIntervalUpperBound", float("inf"))
        if (lo <= d < hi) if d >= 0 and lo >= 0 else (lo < d <= hi):
            return s["ScalingAdjustment"]
    raise AssertionError(f"no step of {p['StepAdjustments']} holds {value}")


def test_alarms_drive_the_alarm_policys_step_scaling(tpl):
    alarms = res(tpl, "AWS::CloudWatch::Alarm")
    policies = res(tpl, "AWS::AutoScaling::ScalingPolicy")
    assert len(alarms) == 2 and len(policies) == 2
    by_action = {}
    for name, a in alarms.items():
        p = a["Properties"]
        assert a["Condition"] == "AlarmMode"
        assert (p["Namespace"], p["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert p["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["RequestQueue", "QueueName"]}}]
        assert (p["Period"], p["EvaluationPeriods"]) == (60, 1)
        (action,) = p["AlarmActions"]
        assert action["Ref"] in policies, f"{name}'s action is not a scaling policy"
        by_action[action["Ref"]] = a
    for name, pol in policies.items():
        assert pol["Condition"] == "AlarmMode"
        assert pol["Properties"]["AutoScalingGroupName"] == ref("WorkerGroup")
        assert (pol["Properties"]["PolicyType"], pol["Properties"]["AdjustmentType"]) == ("StepScaling", "ChangeInCapacity")
    out_policy = next(n for n, a in by_action.items() if a["Properties"]["ComparisonOperator"].startswith("Greater"))
    in_policy = next(n for n, a in by_action.items() if a["Properties"]["ComparisonOperator"].startswith("Less"))

    # docs/autoscaling.md's alarm model: out above 2 visible (+2 up to 10, +5 up to 50, +10 above), in by
    # 1 below 3; whole counts, as SQS reports them.
    def model(v):
        return (2 if v <= 10 else 5 if v <= 50 else 10) if v > 2 else None
    for v in range(0, 200):
        assert step_adjustment(policies[out_policy], by_action[out_policy], v) == model(v), v
        assert step_adjustment(policies[in_policy], by_action[in_policy], v) == (-1 if v < 3 else None), v


def test_scaling_mode_selects_the_scaler_or_the_alarms(tpl):
    p = tpl["Parameters"]["ScalingMode"]
    assert sorted(p["AllowedValues"]) == ["alarm", "controller"]
    c = tpl["Conditions"]
    assert c["ControllerMode"] == {"Fn::Equals": [ref("ScalingMode"), "controller"]}
    assert c["AlarmMode"] == {"Fn::Equals": [ref("ScalingMode"), "alarm"]}
    # The scaler's env file and unit exist only in controller mode (the env file test checks the user data).
    assert "imgcls-scaler.service" in inline_copies()["web.yaml"]
    assert "[ -f /etc/imgcls/scaler.env ]" in inline_copies()["web.yaml"]


def test_the_warm_pool_is_optional_and_off_by_default(tpl):
    assert tpl["Parameters"]["WarmPool"]["Default"] == "false"
    assert tpl["Conditions"]["UseWarmPool"] == {"Fn::Equals": [ref("WarmPool"), "true"]}
    (name, pool), = res(tpl, "AWS::AutoScaling::WarmPool").items()
    assert pool["Condition"] == "UseWarmPool"
    assert pool["Properties"]["PoolState"] == "Stopped"
    assert pool["Properties"]["AutoScalingGroupName"] == ref("WorkerGroup")
    hooks = tpl["Resources"]["WorkerGroup"]["Properties"]["LifecycleHookSpecificationList"]["Fn::If"]
    assert hooks[0] == "UseWarmPool" and hooks[2] == ref("AWS::NoValue")
    assert hooks[1][0]["LifecycleHookName"] == "imgcls-ready"
    assert "--lifecycle-hook-name imgcls-ready" in (DEPLOY / "systemd" / "imgcls-ready").read_text()


def test_the_dashboard_shows_depth_group_size_and_latency(tpl):
    body = tpl["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    dash = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    metrics = {m[1] for w in dash["widgets"] for m in w["properties"]["metrics"]}
    assert {"ApproximateNumberOfMessagesVisible", "GroupInServiceInstances", "GroupDesiredCapacity",
            "ApproximateAgeOfOldestMessage", "BacklogPerInstance", "RequestQueueDepth"} <= metrics


def test_outputs(tpl):
    assert {"WebUrl", "RequestQueueUrl", "ResponseQueueUrl", "InputBucket", "OutputBucket",
            "WorkerGroupName"} <= set(tpl["Outputs"])


# ------------------------------------------------------------------------------------------------ package
def test_make_package_builds_the_release_tarball(tmp_path):
    build = REPO / "build"
    if not (build / "imgcls").exists() or not (REPO / "models" / "mobilenet_v2.imgw").exists():
        pytest.skip("needs build/imgcls and models/ (make build models)")
    if "CMAKE_BUILD_TYPE:STRING=Release" not in (build / "CMakeCache.txt").read_text():
        pytest.skip("build/ is not a Release build")
    r = subprocess.run([str(REPO / "scripts" / "package.sh"), str(build)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "VERSION": "0.0.0-test", "DIST_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    out = Path(r.stdout.strip().splitlines()[-1])
    assert out == tmp_path / "imgcls-0.0.0-test-linux-x86_64.tar.gz"
    with tarfile.open(out) as t:
        names = set(t.getnames())
        top = "imgcls-0.0.0-test-linux-x86_64"
        for want in ("bin/imgcls", "share/imgcls/mobilenet_v2.imgw", "share/imgcls/imgcls-ready",
                     *(f"share/imgcls/systemd/imgcls-{r}.service" for r in (*ROLES, "ready")),
                     *(f"share/imgcls/cloud-init/{r}.yaml" for r in ROLES)):
            assert f"{top}/{want}" in names, want
        assert t.getmember(f"{top}/bin/imgcls").mode & 0o111
        assert t.extractfile(f"{top}/bin/imgcls").read() == (build / "imgcls").read_bytes()
    assert "/dist/" in (REPO / ".gitignore").read_text().splitlines()


# ------------------------------------------------------------------------------------------------- moto
def _cloud_config(b64: str) -> dict:
    return yaml.safe_load(base64.b64decode(b64).decode())


def test_the_stack_deploys_into_moto(aws):
    out = deploy_stack(aws)
    sqs, s3, asg, ec2 = (aws.client(s) for s in ("sqs", "s3", "autoscaling", "ec2"))

    # Queues, with the redrive policy.
    for q, dlq in (("RequestQueueUrl", "RequestDeadLetterQueueUrl"), ("ResponseQueueUrl", "ResponseDeadLetterQueueUrl")):
        name = out[q].rsplit("/", 1)[1]
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        dlq_url = sqs.get_queue_url(QueueName=out[dlq].rsplit("/", 1)[1])["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq_arn and int(redrive["maxReceiveCount"]) == 5
    assert out["RequestQueueUrl"].endswith("/123456789012/imgcls-requests")

    # Buckets.
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {out["InputBucket"], out["OutputBucket"]} <= names

    # The group: its bounds and the one instance of its minimum.
    (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[out["WorkerGroupName"]])["AutoScalingGroups"]
    assert out["WorkerGroupName"] == "imgcls-workers"
    assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (1, 19, 1)
    assert len(g["Instances"]) == 1
    assert set(g["VPCZoneIdentifier"].split(",")) == set(out["WorkerSubnetIds"])

    # The launch template's user data: cloud-init with the worker's env file per the contract.
    (v,) = ec2.describe_launch_template_versions(LaunchTemplateId=g["LaunchTemplate"]["LaunchTemplateId"],
                                                 Versions=[str(g["LaunchTemplate"]["Version"])])["LaunchTemplateVersions"]
    data = v["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["ImageId"] == out["AmiId"]
    env = env_files(_cloud_config(data["UserData"]))
    assert env["worker"]["IMGCLS_QUEUE"] == out["RequestQueueUrl"]
    assert env["worker"]["IMGCLS_IN_BUCKET"] == f"s3://{out['InputBucket']}"
    assert env["worker"]["IMGCLS_OUT_BUCKET"] == f"s3://{out['OutputBucket']}"
    assert env["worker"]["IMGCLS_FLEET"] == f"asg://{g['AutoScalingGroupName']}"

    # Instances: the group's and the web instance, whose user data runs the scaler (controller mode).
    running = {i["InstanceId"]: i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
               if i["State"]["Name"] in ("pending", "running")}
    assert out["WebInstanceId"] in running and g["Instances"][0]["InstanceId"] in running
    web_ud = ec2.describe_instance_attribute(InstanceId=out["WebInstanceId"], Attribute="userData")["UserData"]["Value"]
    web_env = env_files(_cloud_config(web_ud))
    assert sorted(web_env) == ["scaler", "web"]
    assert web_env["web"]["IMGCLS_REPLY_QUEUE"] == out["ResponseQueueUrl"]
    assert web_env["scaler"]["IMGCLS_FLEET"] == "asg://imgcls-workers"
    assert out["WebUrl"].startswith("http://") and out["WebUrl"].endswith("/")

    # The instance runner (the loop test's EC2) reads the same user data the same way.
    from instance_runner import parse_user_data
    launch = parse_user_data(data["UserData"])
    assert launch.args == ["worker"] and launch.env == env["worker"]


def test_alarm_mode_with_a_warm_pool_deploys_without_a_scaler(aws):
    # moto skips the alarms, scaling policies and warm pool (structure tests above cover them) but must
    # take the rest of the alarm-mode, warm-pool stack.
    out = deploy_stack(aws, stack_name="imgcls-alarm", ScalingMode="alarm", MinWorkers=2, MaxWorkers=7, WarmPool="true")
    asg, ec2 = aws.client("autoscaling"), aws.client("ec2")
    (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["imgcls-alarm-workers"])["AutoScalingGroups"]
    assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (2, 7, 2)
    web_ud = ec2.describe_instance_attribute(InstanceId=out["WebInstanceId"], Attribute="userData")["UserData"]["Value"]
    assert sorted(env_files(_cloud_config(web_ud))) == ["web"]
