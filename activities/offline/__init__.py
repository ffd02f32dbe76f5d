"""The offline data scientist: the agents' brain when no LLM is configured or reachable."""

from activities.offline.critique import review_training
from activities.offline.eda_code import write_eda_code
from activities.offline.research import plan_research
from activities.offline.training_code import write_training_code

__all__ = [
    "plan_research",
    "review_training",
    "write_eda_code",
    "write_training_code",
]
