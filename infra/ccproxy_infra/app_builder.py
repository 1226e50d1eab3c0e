"""Builds the four stacks into an App; shared by app.py and the tests."""

from __future__ import annotations

import dataclasses
import os

from aws_cdk import App, Environment, Tags

from ccproxy_infra.compute_stack import ComputeStack
from ccproxy_infra.data_stack import DataStack
from ccproxy_infra.monitoring_stack import MonitoringStack
from ccproxy_infra.network_stack import NetworkStack
from ccproxy_infra.settings import Settings

DEFAULT_REGION = "us-east-1"


@dataclasses.dataclass(frozen=True)
class Stacks:
    network: NetworkStack
    data: DataStack
    compute: ComputeStack
    monitoring: MonitoringStack

    def all(self) -> tuple[NetworkStack, DataStack, ComputeStack, MonitoringStack]:
        return (self.network, self.data, self.compute, self.monitoring)


def build(app: App) -> Stacks:
    """Add Network → Data → Compute → Monitoring to `app`."""
    settings = Settings.from_node(app.node)
    # Account and region come from the CLI's profile. The region must be concrete (ALB
    # access logging needs it): `-c region=…` wins, then the profile's, then us-east-1
    # so an offline `cdk synth` with no AWS configuration still works.
    env = Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=app.node.try_get_context("region") or os.environ.get("CDK_DEFAULT_REGION") or DEFAULT_REGION,
    )
    network = NetworkStack(app, "CcProxyNetwork", settings=settings, env=env)
    data = DataStack(app, "CcProxyData", settings=settings, network=network, env=env)
    compute = ComputeStack(app, "CcProxyCompute", settings=settings, network=network, data=data, env=env)
    monitoring = MonitoringStack(app, "CcProxyMonitoring", settings=settings, data=data, compute=compute, env=env)
    Tags.of(app).add("Project", "ClaudeCodeProxy")
    return Stacks(network, data, compute, monitoring)
