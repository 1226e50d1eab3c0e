#!/usr/bin/env python3
"""CDK entry point: `cdk synth` from infra/, or `python infra/app.py` from the repo root."""

from __future__ import annotations

from aws_cdk import App, Aspects
from ccproxy_infra import app_builder
from ccproxy_infra.settings import cdk_json_context
from cdk_nag import AwsSolutionsChecks

app = App(context=cdk_json_context())
app_builder.build(app)
# cdk-nag AwsSolutions: unsuppressed findings are errors and fail the synth.
# `-c nag=false` skips the checks (e.g. for a quick look at the template).
if str(app.node.try_get_context("nag")).lower() != "false":
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
app.synth()
