"""Residency policy: where data may be processed or downloaded, and why (PURE).

``masnaa.policy`` decides from the data's jurisdictions, classes and recorded
grounds and the operator's rule table; it does no IO (except
``masnaa.policy.loader``, which reads a rules file) and reads no clock.
See docs/residency.md.
"""

from masnaa.policy.cache import EligibilityCache
from masnaa.policy.data import (
    Artifact,
    Dataset,
    GroundKind,
    SiteState,
    SiteView,
    TransferGround,
    dataset,
    dataset_key,
    derive_artifact,
)
from masnaa.policy.residency import (
    DownloadDecision,
    Eligibility,
    Finding,
    ResidencyRefused,
    SiteEligibility,
    check_named_sites,
    eligible_sites,
    judge_transfer,
    may_download,
)
from masnaa.policy.rules import (
    ConditionKind,
    CountryRule,
    RuleSet,
    StrictLocalMode,
    TransferDefault,
)

__all__ = [
    "Artifact",
    "ConditionKind",
    "CountryRule",
    "Dataset",
    "DownloadDecision",
    "Eligibility",
    "EligibilityCache",
    "Finding",
    "GroundKind",
    "ResidencyRefused",
    "RuleSet",
    "SiteEligibility",
    "SiteState",
    "SiteView",
    "StrictLocalMode",
    "TransferDefault",
    "TransferGround",
    "check_named_sites",
    "dataset",
    "dataset_key",
    "derive_artifact",
    "eligible_sites",
    "judge_transfer",
    "may_download",
]
