"""The CDK app (infra/): every stack synthesized once, checked with aws_cdk.assertions and
cdk-nag's AwsSolutions pack (SPEC §10)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

# jsii prints a banner about the Node version on every start; it is noise here.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

INFRA = Path(__file__).resolve().parent.parent / "infra"
sys.path.insert(0, str(INFRA))

from aws_cdk import App, Aspects  # noqa: E402
from aws_cdk.assertions import Annotations, Match, Template  # noqa: E402
from ccproxy_infra import app_builder, compute_stack, metrics, settings  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

# The brief's EMF contract, spelled out here rather than imported, so a rename in
# ccproxy_infra.metrics fails a test instead of silently following.
EMF_METRICS = {
    "RequestCount",
    "RequestLatency",
    "ErrorCount",
    "FallbackCount",
    "CircuitOpen",
    "BedrockTokensUsed",
    "BedrockCost",
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Synthesize the whole app once, with cdk-nag, exactly as infra/cdk.json configures it."""
    context = settings.cdk_json_context()
    # With this flag, error annotations abort app.synth() (what `cdk synth` should do).
    # The test reads the annotations itself, so it lets synthesis finish and asserts
    # on them instead.
    context["@aws-cdk/core:annotationsInValidationReport"] = False
    app = App(context=context, outdir=str(tmp_path_factory.mktemp("cdk.out")))
    stacks = app_builder.build(app)
    Aspects.of(app).add(AwsSolutionsChecks())
    app.synth()
    return {
        stack.stack_name: (stack, Template.from_stack(stack), Annotations.from_stack(stack)) for stack in stacks.all()
    }


def template(synth, name: str) -> Template:
    return synth[name][1]


def resources(synth, name: str, type_: str) -> dict:
    return template(synth, name).find_resources(type_)


def only(found: dict) -> dict:
    assert len(found) == 1, found.keys()
    return next(iter(found.values()))


def as_json(value) -> str:
    return json.dumps(value, sort_keys=True)


# --- the app --------------------------------------------------------------------------


def test_app_has_the_four_stacks_in_dependency_order(synth):
    assert list(synth) == ["CcProxyNetwork", "CcProxyData", "CcProxyCompute", "CcProxyMonitoring"]
    compute = synth["CcProxyCompute"][0]
    monitoring = synth["CcProxyMonitoring"][0]
    assert {s.stack_name for s in compute.dependencies} == {"CcProxyNetwork", "CcProxyData"}
    assert {s.stack_name for s in monitoring.dependencies} >= {"CcProxyCompute", "CcProxyData"}


@pytest.mark.parametrize("name", ["CcProxyNetwork", "CcProxyData", "CcProxyCompute", "CcProxyMonitoring"])
def test_cdk_nag_aws_solutions_has_no_unsuppressed_errors(synth, name):
    annotations = synth[name][2]
    errors = annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert [(e.id, e.entry.data) for e in errors] == []


def test_every_nag_suppression_gives_a_reason(synth):
    found = 0
    for _, tpl, _ in synth.values():
        for resource in tpl.to_json()["Resources"].values():
            rules = resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
            for rule in rules:
                found += 1
                assert len(rule.get("reason", "")) >= 40, rule
    assert found > 0


# --- network --------------------------------------------------------------------------


def test_vpc_spans_two_azs_with_public_app_and_isolated_subnets(synth):
    subnets = resources(synth, "CcProxyNetwork", "AWS::EC2::Subnet")
    assert len(subnets) == 6
    kinds = {}
    for subnet in subnets.values():
        tags = {t["Key"]: t["Value"] for t in subnet["Properties"]["Tags"]}
        kinds.setdefault(tags["aws-cdk:subnet-type"], set()).add(as_json(subnet["Properties"]["AvailabilityZone"]))
    assert set(kinds) == {"Public", "Private", "Isolated"}
    assert all(len(azs) == 2 for azs in kinds.values())
    assert len(resources(synth, "CcProxyNetwork", "AWS::EC2::NatGateway")) == 2
    template(synth, "CcProxyNetwork").resource_count_is("AWS::EC2::FlowLog", 1)


def test_only_the_alb_is_open_to_the_internet_and_only_on_443_and_80(synth):
    open_ports = []
    for _, tpl, _ in synth.values():
        for sg in tpl.find_resources("AWS::EC2::SecurityGroup").values():
            open_ports.extend(
                (sg["Properties"]["GroupDescription"], rule["FromPort"])
                for rule in sg["Properties"].get("SecurityGroupIngress", [])
                if rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0"
            )
        for rule in tpl.find_resources("AWS::EC2::SecurityGroupIngress").values():
            assert rule["Properties"].get("CidrIp") != "0.0.0.0/0"
    assert sorted(p for _, p in open_ports) == [80, 443]
    assert all(d.startswith("ccproxy ALB") for d, _ in open_ports)


def test_database_accepts_postgres_only_from_the_service_security_group(synth):
    ingress = resources(synth, "CcProxyNetwork", "AWS::EC2::SecurityGroupIngress")
    to_db = [
        r["Properties"] for r in ingress.values() if "DatabaseSecurityGroup" in as_json(r["Properties"]["GroupId"])
    ]
    assert len(to_db) == 1
    assert to_db[0]["FromPort"] == to_db[0]["ToPort"] == 5432
    assert "ServiceSecurityGroup" in as_json(to_db[0]["SourceSecurityGroupId"])


# --- secrets & database ---------------------------------------------------------------


def test_aurora_is_serverless_v2_postgres_15_encrypted_with_its_own_key(synth):
    cluster = only(resources(synth, "CcProxyData", "AWS::RDS::DBCluster"))["Properties"]
    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["EngineVersion"].startswith("15.")
    assert cluster["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0.5, "MaxCapacity": 4}
    assert cluster["StorageEncrypted"] is True
    assert "DatabaseKey" in as_json(cluster["KmsKeyId"])
    assert cluster["BackupRetentionPeriod"] == 7
    assert cluster["DeletionProtection"] is True
    # credentials come from the generated Secrets Manager secret, never a literal
    assert "{{resolve:secretsmanager:" in as_json(cluster["MasterUserPassword"])


def test_aurora_is_multi_az_with_a_reader_in_the_second_az(synth):
    instances = resources(synth, "CcProxyData", "AWS::RDS::DBInstance")
    assert len(instances) == 2
    azs = {}
    for instance in instances.values():
        props = instance["Properties"]
        assert props["DBInstanceClass"] == "db.serverless"
        assert props["PubliclyAccessible"] is False
        azs[props["PromotionTier"]] = props["AvailabilityZone"]["Fn::Select"][0]
    assert azs == {0: 0, 1: 1}  # writer in AZ 0, reader (tier 1) in AZ 1


def test_database_lives_in_the_isolated_subnets(synth):
    group = only(resources(synth, "CcProxyData", "AWS::RDS::DBSubnetGroup"))
    ids = as_json(group["Properties"]["SubnetIds"])
    assert ids.count("dataSubnet") == 2
    assert "publicSubnet" not in ids


def test_kms_keys_rotate(synth):
    for name in ("CcProxyData", "CcProxyMonitoring"):
        for key in resources(synth, name, "AWS::KMS::Key").values():
            assert key["Properties"]["EnableKeyRotation"] is True


def test_database_url_secret_is_assembled_from_a_dynamic_reference(synth):
    secrets = resources(synth, "CcProxyData", "AWS::SecretsManager::Secret")
    url = next(s for k, s in secrets.items() if k.startswith("DatabaseUrl"))
    joined = url["Properties"]["SecretString"]["Fn::Join"][1]
    assert joined[0].startswith("postgresql://ccproxy:{{resolve:secretsmanager:")
    assert joined[-1].endswith("/ccproxy?sslmode=require")


def test_app_secrets_exist_for_every_injected_setting(synth):
    secrets = resources(synth, "CcProxyData", "AWS::SecretsManager::Secret")
    prefixes = {"KeyHashSecret", "JwtSecret", "AdminCredentials", "PlanApiKey", "DatabaseUrl"}
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in secrets), prefix
    admin = next(s for k, s in secrets.items() if k.startswith("AdminCredentials"))
    assert set(json.loads(admin["Properties"]["SecretString"])) == {"username", "password_hash"}


# --- compute --------------------------------------------------------------------------


def containers(synth, family: str) -> dict:
    task = next(
        t
        for t in resources(synth, "CcProxyCompute", "AWS::ECS::TaskDefinition").values()
        if t["Properties"]["Family"] == family
    )
    (container,) = task["Properties"]["ContainerDefinitions"]
    return task["Properties"], container


def test_task_is_half_a_vcpu_and_1_gb_serving_on_8000(synth):
    task, container = containers(synth, "ccproxy")
    assert (task["Cpu"], task["Memory"]) == ("512", "1024")
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert container["Command"] == ["ccproxy", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert container["PortMappings"] == [{"ContainerPort": 8000, "Protocol": "tcp"}]
    assert container["StopTimeout"] == 120
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["CCPROXY_DRAIN_SECONDS"] == "110"
    assert "BedrockKeysKey" in as_json(env["CCPROXY_KMS_KEY_ID"])
    assert "/health" in " ".join(container["HealthCheck"]["Command"])


def test_secrets_are_injected_by_ecs_not_set_as_plain_environment(synth):
    for family in ("ccproxy", "ccproxy-ops"):
        _, container = containers(synth, family)
        secrets = {s["Name"]: as_json(s["ValueFrom"]) for s in container["Secrets"]}
        assert set(secrets) == {
            "CCPROXY_DATABASE_URL",
            "CCPROXY_KEY_HASH_SECRET",
            "CCPROXY_JWT_SECRET",
            "CCPROXY_ADMIN_USERNAME",
            "CCPROXY_ADMIN_PASSWORD_HASH",
            "CCPROXY_PLAN_API_KEY",
        }
        assert ":username::" in secrets["CCPROXY_ADMIN_USERNAME"]
        assert ":password_hash::" in secrets["CCPROXY_ADMIN_PASSWORD_HASH"]
        assert ":api_key::" in secrets["CCPROXY_PLAN_API_KEY"]
        plain = {e["Name"] for e in container["Environment"]}
        assert not plain & set(secrets)
        assert not any(n.endswith(("SECRET", "PASSWORD_HASH", "API_KEY", "URL")) for n in plain)


def test_logs_go_to_cloudwatch_with_awslogs_and_retention(synth):
    for family in ("ccproxy", "ccproxy-ops"):
        _, container = containers(synth, family)
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        assert "GatewayLogs" in as_json(container["LogConfiguration"]["Options"]["awslogs-group"])
    group = only(resources(synth, "CcProxyCompute", "AWS::Logs::LogGroup"))
    assert group["Properties"]["RetentionInDays"] == 30


def test_migration_task_runs_ccproxy_migrate_with_the_same_image(synth):
    _, serve = containers(synth, "ccproxy")
    _, ops = containers(synth, "ccproxy-ops")
    assert ops["Command"] == ["ccproxy", "migrate"]
    assert ops["Image"] == serve["Image"]
    assert ops["Name"] == serve["Name"] == compute_stack.CONTAINER_NAME


def test_service_runs_in_private_subnets_with_circuit_breaker_rollback(synth):
    service = only(resources(synth, "CcProxyCompute", "AWS::ECS::Service"))["Properties"]
    assert service["DesiredCount"] == 2
    assert service["LaunchType"] == "FARGATE"
    config = service["DeploymentConfiguration"]
    assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert config["MinimumHealthyPercent"] == 100
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert as_json(network["Subnets"]).count("appSubnet") == 2


def test_service_scales_2_to_10_on_cpu_and_memory(synth):
    target = only(resources(synth, "CcProxyCompute", "AWS::ApplicationAutoScaling::ScalableTarget"))["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 10)
    policies = resources(synth, "CcProxyCompute", "AWS::ApplicationAutoScaling::ScalingPolicy")
    metric_types = {
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]
        for p in policies.values()
    }
    assert metric_types == {"ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization"}


def test_alb_idle_timeout_covers_ten_minute_requests(synth):
    alb = only(resources(synth, "CcProxyCompute", "AWS::ElasticLoadBalancingV2::LoadBalancer"))
    props = alb["Properties"]
    assert props["Scheme"] == "internet-facing"
    attributes = {a["Key"]: a["Value"] for a in props["LoadBalancerAttributes"]}
    assert 600 < int(attributes["idle_timeout.timeout_seconds"]) <= 4000
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"


def test_https_listener_uses_the_certificate_and_http_redirects_to_https(synth):
    listeners = resources(synth, "CcProxyCompute", "AWS::ElasticLoadBalancingV2::Listener")
    by_port = {x["Properties"]["Port"]: x["Properties"] for x in listeners.values()}
    assert set(by_port) == {80, 443}
    https = by_port[443]
    assert https["Protocol"] == "HTTPS"
    assert "certificate/" in as_json(https["Certificates"])
    assert https["DefaultActions"][0]["Type"] == "forward"
    http = by_port[80]
    assert http["Protocol"] == "HTTP"
    assert http["DefaultActions"] == [
        {
            "Type": "redirect",
            "RedirectConfig": {"Port": "443", "Protocol": "HTTPS", "StatusCode": "HTTP_301"},
        }
    ]


def test_target_group_health_checks_health_on_port_8000(synth):
    tg = only(resources(synth, "CcProxyCompute", "AWS::ElasticLoadBalancingV2::TargetGroup"))
    props = tg["Properties"]
    assert props["Port"] == 8000
    assert props["TargetType"] == "ip"
    assert props["HealthCheckPath"] == "/health"
    assert props["Matcher"] == {"HttpCode": "200"}


# --- IAM ------------------------------------------------------------------------------


def statements(synth):
    for name, (_, tpl, _) in synth.items():
        for policy_id, policy in tpl.find_resources("AWS::IAM::Policy").items():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                yield name, policy_id, statement


def listed(value) -> list:
    return value if isinstance(value, list) else [value]


def test_no_iam_statement_grants_kms_on_every_key(synth):
    for name, policy_id, statement in statements(synth):
        actions = listed(statement["Action"])
        if any(a.startswith("kms:") or a == "*" for a in actions):
            assert "*" not in listed(statement["Resource"]), (name, policy_id, statement)


def test_no_iam_statement_allows_every_action(synth):
    for name, policy_id, statement in statements(synth):
        actions = listed(statement["Action"])
        assert "*" not in actions and not any(a.endswith(":*") for a in actions), (
            name,
            policy_id,
        )


def task_role_statements(synth) -> dict:
    policy = next(
        p for k, p in resources(synth, "CcProxyCompute", "AWS::IAM::Policy").items() if k.startswith("TaskRole")
    )
    return {s.get("Sid", as_json(s["Action"])): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_task_role_may_invoke_bedrock_models_and_profiles_only(synth):
    bedrock = task_role_statements(synth)["InvokeAnthropicModelsOnBedrock"]
    assert sorted(bedrock["Action"]) == [
        "bedrock:CountTokens",
        "bedrock:InvokeModel",
        "bedrock:InvokeModelWithResponseStream",
    ]
    resources_ = [as_json(r) for r in bedrock["Resource"]]
    assert len(resources_) == 2
    assert any(":foundation-model/anthropic." in r for r in resources_)
    assert any(":inference-profile/" in r for r in resources_)


def test_task_role_uses_only_its_own_kms_key(synth):
    kms = task_role_statements(synth)["EnvelopeKeyForBedrockCredentials"]
    assert sorted(kms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert not isinstance(kms["Resource"], list)
    assert "BedrockKeysKey" in as_json(kms["Resource"])


def test_task_role_reads_only_its_own_secrets(synth):
    for statement in task_role_statements(synth).values():
        if any(a.startswith("secretsmanager:") for a in listed(statement["Action"])):
            refs = [as_json(r) for r in listed(statement["Resource"])]
            assert len(refs) == 5
            assert all(re.search(r"(DatabaseUrl|KeyHashSecret|JwtSecret|AdminCredentials|PlanApiKey)", r) for r in refs)
            break
    else:
        pytest.fail("no Secrets Manager statement on the task role")


# --- monitoring -----------------------------------------------------------------------


def test_emf_contract_matches_the_gateway(synth):
    assert set(metrics.ALL) == EMF_METRICS
    assert metrics.NAMESPACE == "ClaudeCodeProxy"
    assert metrics.DIMENSIONS == {"Service": "ccproxy"}


def alarms(synth) -> dict:
    return {k: a["Properties"] for k, a in resources(synth, "CcProxyMonitoring", "AWS::CloudWatch::Alarm").items()}


def alarm(synth, prefix: str) -> dict:
    return next(a for k, a in alarms(synth).items() if k.startswith(prefix))


def gateway_metric_names(alarm_props: dict) -> set[str]:
    names = set()
    for query in alarm_props.get("Metrics", []):
        stat = query.get("MetricStat")
        if stat:
            metric = stat["Metric"]
            assert metric["Namespace"] == "ClaudeCodeProxy"
            assert metric["Dimensions"] == [{"Name": "Service", "Value": "ccproxy"}]
            names.add(metric["MetricName"])
    return names


def test_five_alarms_all_notify_the_sns_topic(synth):
    found = alarms(synth)
    assert len(found) == 5
    for props in found.values():
        assert "AlarmTopic" in as_json(props["AlarmActions"])
        assert "AlarmTopic" in as_json(props["OKActions"])


def test_error_rate_alarm_is_metric_math_over_request_count(synth):
    props = alarm(synth, "ErrorRateAlarm")
    expression = next(q["Expression"] for q in props["Metrics"] if "Expression" in q)
    assert "requests" in expression and "100" in expression
    assert gateway_metric_names(props) == {"RequestCount", "ErrorCount"}


def test_fallback_rate_alarm_is_metric_math_over_request_count(synth):
    props = alarm(synth, "FallbackRateAlarm")
    assert any("Expression" in q for q in props["Metrics"])
    assert gateway_metric_names(props) == {"RequestCount", "FallbackCount"}


def test_latency_alarm_watches_p95_request_latency(synth):
    props = alarm(synth, "LatencyP95Alarm")
    (query,) = props["Metrics"]
    assert query["MetricStat"]["Stat"] == "p95"
    assert gateway_metric_names(props) == {"RequestLatency"}


def test_healthy_hosts_and_database_cpu_alarms(synth):
    hosts = alarm(synth, "HealthyHostsAlarm")
    assert (hosts["Namespace"], hosts["MetricName"]) == ("AWS/ApplicationELB", "HealthyHostCount")
    assert hosts["ComparisonOperator"] == "LessThanThreshold"
    assert hosts["Threshold"] == 2
    cpu = alarm(synth, "DatabaseCpuAlarm")
    assert (cpu["Namespace"], cpu["MetricName"]) == ("AWS/RDS", "CPUUtilization")
    assert "Database" in as_json(cpu["Dimensions"])


def test_alarm_topic_is_encrypted(synth):
    topic = only(resources(synth, "CcProxyMonitoring", "AWS::SNS::Topic"))
    assert "AlarmTopicKey" in as_json(topic["Properties"]["KmsMasterKeyId"])


def test_dashboard_graphs_only_known_gateway_metrics_with_the_service_dimension(synth):
    dashboard = only(resources(synth, "CcProxyMonitoring", "AWS::CloudWatch::Dashboard"))
    body = as_json(dashboard["Properties"]["DashboardBody"])
    used = re.findall(r'\[\\+"ClaudeCodeProxy\\+",\\+"(\w+)\\+",\\+"Service\\+",\\+"ccproxy', body)
    assert set(used) == EMF_METRICS
    assert "ClaudeCodeProxy" not in re.sub(r'\\+"ClaudeCodeProxy\\+",\\+"\w+\\+",\\+"Service\\+",\\+"ccproxy', "", body)
    assert "request_completed" in body and "cost_usd" in body


# --- settings (no synthesis) ----------------------------------------------------------


def test_context_parameters_are_read_and_validated():
    app = App(
        context={
            "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/abc",
            "domainName": "llm.corp.example",
            "logRetentionDays": "90",
        }
    )
    read = settings.Settings.from_node(app.node)
    assert read.certificate_arn.endswith("certificate/abc")
    assert read.domain_name == "llm.corp.example"
    assert read.log_retention_days == 90
    defaults = settings.Settings.from_node(App().node)
    assert defaults.domain_name == settings.PLACEHOLDER_DOMAIN
    assert defaults.image_uri is None
    with pytest.raises(settings.SettingsError, match="logRetentionDays"):
        settings.Settings.from_node(App(context={"logRetentionDays": "45"}).node)
    with pytest.raises(settings.SettingsError, match="domainName"):
        settings.Settings.from_node(App(context={"domainName": "https://x/"}).node)


@pytest.mark.parametrize(
    ("uri", "account", "repo", "tag"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/ccproxy:1.2.3", "123456789012", "ccproxy", "1.2.3"),
        ("210987654321.dkr.ecr.us-east-1.amazonaws.com/team/ccproxy", "210987654321", "team/ccproxy", None),
    ],
)
def test_private_ecr_image_uris_are_recognised(uri, account, repo, tag):
    match = compute_stack._ECR_URI.match(uri)
    assert match and (match["account"], match["repo"], match["tag"]) == (account, repo, tag)


def test_public_image_uris_are_not_treated_as_ecr():
    assert compute_stack._ECR_URI.match("public.ecr.aws/acme/ccproxy:latest") is None
