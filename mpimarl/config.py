"""The typed config tree of a run.

YAML files in `configs/` are data only; this module is the one place that says which keys exist,
what they mean and which values are allowed. Validation happens once, at load: an unknown key names
the nearest valid one, a bad value names the key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mpimarl.errors import ConfigError


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RoleConfig(_Section):
    """One role of the task and the agents that play it."""

    name: str = Field(description="Role name, e.g. 'player', 'predator', 'speaker'.")
    agents: str = Field(
        default=".*",
        description="Regular expression matched (fullmatch) against the environment's agent names.",
    )
    team: bool = Field(
        default=True,
        description="True: one policy controls all of the role's agents in a match (a team). "
        "False: every agent of the role is its own seat (e.g. the two players of connect_four).",
    )
    critic: Literal["local", "state", "agent_state"] | None = Field(
        default=None, description="This role's critic input, overriding ppo.critic (None: ppo.critic)."
    )
    advantage: Literal["gae", "coma"] | None = Field(
        default=None, description="This role's advantage estimator, overriding ppo.advantage (None: ppo.advantage)."
    )

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value):
            raise ValueError(f"role name {value!r} must be letters, digits and '_' (starting with a letter)")
        return value


class EnvConfig(_Section):
    """Which environment to run."""

    id: str = Field(
        description="Import path of the environment: 'package.module' (PettingZoo module with "
        "env()/parallel_env()), 'package.module:factory', or 'gymnasium:ID' for a registered "
        "Gymnasium id. `python -m mpimarl envs` lists what is installed."
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the env factory.")


class TaskConfig(_Section):
    """What kind of multi-agent problem this is."""

    kind: Literal["competitive", "cooperative"] = Field(
        default="competitive",
        description="competitive: seats play against each other (wins/draws/losses, Elo). "
        "cooperative: all seats share the outcome; a policy is judged by its team return.",
    )
    roles: list[RoleConfig] = Field(description="Roles, in order; every agent must match exactly one.")
    draw_margin: float = Field(
        default=0.0,
        ge=0.0,
        description="Competitive outcome rule: a side wins an episode when its mean per-agent return "
        "exceeds the other side's by more than this margin; otherwise it is a draw.",
    )
    outcome: Literal["auto", "returns", "par"] = Field(
        default="auto",
        description="How a competitive episode is scored for ratings. returns: sides (seats) are "
        "ranked by mean per-agent return (two sides: the higher wins; N sides: a free-for-all "
        "ranking). par: each side's return is first placed in its own role's reference "
        "distribution (all seats uniformly random, `evaluation.par_episodes` episodes at start) and "
        "sides are ranked by that percentile, so asymmetric general-sum roles (predator/prey) can "
        "both win and lose. auto: par when the competitive task has several roles, else returns.",
    )

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: list[RoleConfig]) -> list[RoleConfig]:
        if not roles:
            raise ValueError("at least one role is needed")
        names = [r.name for r in roles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"role names must be unique, repeated: {dupes}")
        return roles


class PPOConfig(_Section):
    """Proximal policy optimisation, as each trainer runs it."""

    num_envs: int = Field(default=16, ge=1, description="Environment copies stepped together per trainer.")
    rollout_steps: int = Field(
        default=2048, ge=16, description="Learner transitions collected per update (across all copies)."
    )
    epochs: int = Field(default=4, ge=1, description="Passes over each rollout.")
    minibatches: int = Field(default=4, ge=1, description="Minibatches per epoch.")
    learning_rate: float = Field(default=2.5e-4, gt=0, description="Adam learning rate.")
    anneal_lr: bool = Field(
        default=False,
        description="Linearly decay the learning rate to 0 over the learner's training: the run, or each "
        "generation with reset_each_generation (every generation is then a training of its own).",
    )
    gamma: float = Field(default=0.99, gt=0, le=1, description="Discount factor.")
    gae_lambda: float = Field(default=0.95, ge=0, le=1, description="GAE lambda.")
    clip_coef: float = Field(default=0.2, gt=0, description="PPO ratio clip.")
    clip_value: bool = Field(default=True, description="Clip the value loss like the policy ratio.")
    ent_coef: float = Field(default=0.01, ge=0, description="Entropy bonus coefficient.")
    ent_coef_final: float | None = Field(
        default=None,
        ge=0,
        description="Anneal the entropy bonus linearly from ent_coef to this over the learner's training (as "
        "anneal_lr: the run, or each generation with reset_each_generation). A best response that must "
        "find a move whose value shows only after later moves are learned (slow-playing a strong hand) "
        "keeps trying it early and still ends near-deterministic. None: ent_coef throughout.",
    )
    vf_coef: float = Field(default=0.5, ge=0, description="Value loss coefficient.")
    max_grad_norm: float = Field(default=0.5, gt=0, description="Global gradient norm clip.")
    norm_adv: bool = Field(default=True, description="Normalise advantages per minibatch.")
    target_kl: float | None = Field(default=None, description="Stop the epochs early past this KL.")
    hidden: list[int] = Field(default=[64, 64], description="Hidden layer sizes of actor and critic MLPs.")
    activation: Literal["tanh", "relu"] = Field(default="tanh", description="Hidden activation.")
    torso: Literal["mlp", "conv"] = Field(
        default="mlp",
        description="mlp: the flat observation feeds the hidden layers. conv: 3x3 convolutions over a "
        "board observation (H, W, C), e.g. connect four's 6x7x2, before the hidden layers.",
    )
    conv_channels: list[int] = Field(default=[32, 64], description="conv torso: channels of each 3x3 layer.")
    reset_each_generation: bool = Field(
        default=False,
        description="Start every generation from freshly initialised weights and optimiser state, so each "
        "snapshot is a new best response to that generation's opponents (PSRO's oracle). Off: training "
        "carries on from the previous snapshot, which can collapse to a deterministic policy that no "
        "longer explores.",
    )
    critic: Literal["local", "state", "agent_state"] = Field(
        default="local",
        description="What the critic reads (actors always act on their own observation). local: the "
        "agent's observation (independent PPO). state: the environment's global state (its state(), "
        "else every agent's observation concatenated): MAPPO's centralised critic. agent_state: the "
        "state, the agent's own observation and a one-hot of the agent (MAPPO's agent-specific state).",
    )
    advantage: Literal["gae", "coma"] = Field(
        default="gae",
        description="gae: generalised advantage estimation on the critic's V. coma: a centralised Q "
        "critic over the agent's actions given the state and the other agents' actions (Discrete "
        "actions only), trained on TD(lambda) targets; COMA's counterfactual advantage "
        "Q(s,u) - sum_u' pi(u'|o) Q(s,(u_-a,u')) in the PPO clipped objective. Needs critic state or agent_state.",
    )
    value_norm: bool = Field(
        default=False,
        description="Normalise value targets by running mean/std of the returns (MAPPO's value "
        "normalisation); the critic predicts normalised values.",
    )
    obs_norm: bool = Field(
        default=False,
        description="Normalise observations (and a centralised critic's input) by running per-feature "
        "mean/std, clipped to +-10, as PPO on MuJoCo does. The statistics are folded in after each "
        "update and are part of the policy's weights (snapshots, opponents, exports act the same).",
    )

    @model_validator(mode="after")
    def _minibatch_fits(self) -> PPOConfig:
        if self.rollout_steps < self.minibatches:
            raise ValueError(f"{self.rollout_steps=} must be at least {self.minibatches=}")
        return self


class ScheduleConfig(_Section):
    """How trainers and the server take turns."""

    mode: Literal["sync", "async"] = Field(
        default="sync",
        description="sync: generations (train, publish, evaluate, broadcast), deterministic for a "
        "seed and world size. async: trainers never wait for each other.",
    )
    total_steps: int = Field(default=1_000_000, ge=1, description="Environment steps per trainer (--steps).")
    steps_per_generation: int = Field(
        default=50_000, ge=1, description="Environment steps a trainer takes between two snapshots."
    )
    time_limit_s: float | None = Field(
        default=None,
        gt=0,
        description="Stop after the generation during which this many seconds have passed (None: no "
        "limit; total_steps still caps the run). sync: the server decides, so every trainer stops at "
        "the same generation; a time limit makes a sync run's length depend on the machine.",
    )
    generation_growth: float = Field(
        default=1.0,
        ge=1.0,
        le=10.0,
        description="Each generation's step budget is this factor times the previous one's (1: every "
        "generation takes steps_per_generation). Above 1 a PSRO best response gets more steps as the pool "
        "grows: late best responses must find ever smaller gains against a stronger meta-strategy, which "
        "a fixed budget leaves weak.",
    )
    max_steps_per_generation: int | None = Field(
        default=None,
        ge=1,
        description="Cap on a generation's step budget when generation_growth is above 1 (None: no cap; "
        "total_steps still ends the run).",
    )

    @model_validator(mode="after")
    def _cap_above_base(self) -> ScheduleConfig:
        cap = self.max_steps_per_generation
        if cap is not None and cap < self.steps_per_generation:
            raise ValueError(f"schedule.max_steps_per_generation {cap} is below schedule.steps_per_generation "
                             f"{self.steps_per_generation}: the cap must be at least the first generation's budget")
        return self

    def generation_steps(self) -> Iterator[int]:
        """The step budget of generations 0, 1, 2, ... until total_steps are spent (the last takes the
        remainder). The one place the generation schedule is computed (trainers, server, resume)."""
        done, budget = 0, float(self.steps_per_generation)
        cap = self.max_steps_per_generation or self.total_steps
        while done < self.total_steps:
            steps = max(1, min(int(round(budget)), cap, self.total_steps - done))
            yield steps
            done += steps
            budget = min(budget * self.generation_growth, float(cap))

    def generations(self) -> int:
        """Snapshots each trainer publishes after its initial version 0."""
        if self.generation_growth == 1.0:
            return max(1, math.ceil(self.total_steps / min(self.steps_per_generation,
                                                           self.max_steps_per_generation or self.total_steps)))
        return max(1, sum(1 for _ in self.generation_steps()))

    def generation_budget(self, generation: int) -> int:
        """Environment steps of generation `generation` (0 past the last)."""
        if self.generation_growth == 1.0:
            per = min(self.steps_per_generation, self.max_steps_per_generation or self.total_steps)
            return max(0, min(per, self.total_steps - generation * per))
        for g, steps in enumerate(self.generation_steps()):
            if g == generation:
                return steps
        return 0


class MatchmakingConfig(_Section):
    """Who a learner meets in training."""

    strategy: str = Field(
        default="openai_five",
        description="latest: naive self-play; uniform: fictitious self-play over the pool; "
        "openai_five: latest_fraction latest, the rest past snapshots by quality score; "
        "pfsp: AlphaStar's prioritised fictitious self-play, weighted by the learner's win rate in "
        "the payoff table; psro: the Nash equilibrium of the payoff table (policy-space response "
        "oracles), one meta-strategy per role.",
    )
    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        from mpimarl.league.matchmaking import matchmaker_names

        names = matchmaker_names()
        if value not in names:
            near = difflib.get_close_matches(value, names, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"unknown matchmaker {value!r}{hint}; expected one of {', '.join(map(repr, names))}")
        return value

    pfsp_weighting: Literal["hard", "variance", "linear", "linear_capped"] = Field(
        default="hard",
        description="pfsp: f(x) of the learner's win rate x: hard (1-x)^p, variance x(1-x), linear "
        "1-x, linear_capped min(0.5, 1-x).",
    )
    pfsp_exponent: float = Field(default=2.0, gt=0, description="pfsp hard weighting: the exponent p.")
    pfsp_self_play: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="pfsp: share of the drawn line-ups played against the latest snapshots instead (own-role "
        "seats the learner's own latest), as AlphaStar's main agents play 35% self-play.",
    )
    pfsp_memory: int = Field(
        default=256,
        ge=0,
        description="pfsp: x is a running average over the learner's games against each snapshot (training "
        "and evaluation), forgetting with a time constant of this many games; 0 reads only the evaluated "
        "payoff table.",
    )
    psro_solver: Literal["lp", "max_entropy", "replicator"] = Field(
        default="lp",
        description="psro: lp solves the two-player zero-sum meta-game exactly (one vertex of the equilibrium "
        "set); max_entropy takes the symmetric meta-game's maximum-entropy equilibrium, which spreads weight "
        "over every snapshot any equilibrium plays (asymmetric roles: lp); replicator runs replicator "
        "dynamics (general-sum games).",
    )
    psro_window: int | None = Field(
        default=None,
        ge=2,
        description="psro: only the newest snapshots of a role enter the meta-game (None: all); "
        "evaluation then plays each new snapshot against the whole window.",
    )
    psro_sampling: Literal["independent", "systematic"] = Field(
        default="independent",
        description="psro: how a generation's line-ups sample the meta-strategy. independent: each seat an "
        "independent draw, so each trainer's best response targets a slightly different mixture; "
        "systematic: each snapshot fills within one of its share of the line-ups (on Kuhn, 3 seeds, this "
        "ended more exploitable: benchmarks/results/league_kuhn_sampling.md).",
    )
    latest_fraction: float = Field(default=0.8, ge=0, le=1, description="openai_five: share of latest.")
    quality_lr: float = Field(default=0.01, gt=0, description="openai_five: quality score step (eta).")
    lineups: int = Field(default=8, ge=1, description="Opponent/partner line-ups drawn per generation.")
    exploiters: int = Field(
        default=0,
        ge=0,
        description="Main exploiters per role (AlphaStar): the last `exploiters` trainers of each role "
        "train only against the latest snapshots of the other seats' main (non-exploiter) policies, "
        "never against baselines or old snapshots; their snapshots join the pool, where the main "
        "policies' matchmaker finds them. Each role keeps at least one main trainer.",
    )
    baseline_fraction: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Chance that a line-up is the uniform-random baseline instead of pool members: a "
        "fixed anchor in the training mix that keeps a population from forgetting how to beat weak play.",
    )


class BaselineConfig(_Section):
    """A fixed scripted opponent or partner: an evaluation anchor, optionally in the training mix."""

    name: str = Field(
        default="",
        description="Name in run files and tables, e.g. 'tactical' (default: the policy's name and its "
        "kwargs, e.g. 'negamax_depth2').",
    )
    policy: str = Field(
        description="A registered scripted policy (`python -m mpimarl baselines` lists them) or an "
        "import path 'package.module:callable' mapping (observation, mask) to an action."
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword parameters for the policy's factory, e.g. {depth: 4} for negamax "
        "(`python -m mpimarl baselines` lists each policy's parameters); checked at load.",
    )
    roles: list[str] | None = Field(default=None, description="Roles it can play (None: every role).")
    train_fraction: float = Field(
        default=0.0, ge=0, le=1, description="Share of training line-ups in which it fills the other seats."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("policy"), str):
            return {**data, "name": default_baseline_name(data["policy"], data.get("kwargs"))}
        return data

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value) or value == "random":
            raise ValueError(f"baseline name {value!r} must be letters, digits and '_' and not 'random'")
        return value


def default_baseline_name(policy: str, kwargs: Any) -> str:
    """'negamax' with {depth: 2} -> 'negamax_depth2'; an import path's attribute name for its policy."""
    base = policy.strip().rpartition(":")[2] or policy.strip()
    parts = [base, *(f"{k}{v}" for k, v in (kwargs.items() if isinstance(kwargs, dict) else ()))]
    name = re.sub(r"\W+", "_", "_".join(str(p) for p in parts)).strip("_")
    return name if re.match(r"[A-Za-z]", name) else f"baseline_{name}"


def _registered_baselines() -> tuple[str, ...]:
    from mpimarl.baselines.scripted import BASELINE_NAMES

    return BASELINE_NAMES


class EvaluationConfig(_Section):
    """Scheduled evaluation matches the server plays, apart from training statistics."""

    baseline_episodes: int = Field(
        default=40,
        ge=0,
        description="Episodes of each new snapshot against the uniform-random baseline and each scripted baseline.",
    )
    pool_opponents: int = Field(default=2, ge=0, description="Pool members each new snapshot meets.")
    pool_episodes: int = Field(default=20, ge=0, description="Episodes against each sampled pool member.")
    num_envs: int = Field(default=8, ge=1, description="Environment copies the evaluator steps together.")
    greedy: bool = Field(default=False, description="Evaluate with the most likely action, not a sample.")
    workers: Literal["server", "trainers"] = Field(
        default="server",
        description="Who plays evaluation episodes: 'server' (rank 0 itself) or 'trainers' (rank 0 plans "
        "and rates; the group leaders play the episodes between updates and send back only results).",
    )
    elo_k: float = Field(default=16.0, gt=0, description="Elo K factor.")
    elo_initial: float = Field(default=1000.0, description="Elo of a new policy and of the random anchor.")
    par_episodes: int = Field(
        default=200,
        ge=1,
        description="Episodes of all-random play at start: the reference for task.outcome 'par' and "
        "the calibration of scripted anchors' ratings against random.",
    )
    exact_payoff: bool | None = Field(
        default=None,
        description="Fill the payoff table with exact expected returns instead of sampled episodes "
        "(OpenSpiel games only). None: on where the game allows it.",
    )
    exploitability: bool | None = Field(
        default=None,
        description="Record the exact exploitability of every latest policy and of the population "
        "mixture each generation (OpenSpiel zero-sum games). None: on where the game allows it.",
    )
    crossplay_partners: int = Field(
        default=2,
        ge=0,
        description="Cooperative tasks with several roles: each new snapshot also plays "
        "`pool_episodes` episodes with this many older snapshots of its partner roles (partners it "
        "never trained with) besides the latest: matches rows with matchmaker 'crossplay', the "
        "cross-play matrix of `mpimarl.analysis.crossplay_matrix`.",
    )
    communication_roles: list[str] = Field(
        default_factory=list,
        description="Cooperative tasks: roles whose new snapshots are also played with every partner "
        "seat taken by the uniform-random baseline (random messages for a listener), on the same seeds "
        "as with the trained partners: matches rows with matchmaker 'communication' (return_mean: "
        "trained partners, opponent_return_mean: random partners).",
    )


class TrainerConfig(_Section):
    """Per-trainer resources."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where learner ranks compute (rank 0 and IMPALA actors always use the CPU). auto: a GPU "
        "when the rank sees one, else the CPU; cuda: a GPU, and an error where there is none; cpu: never a GPU. "
        "GPUs are dealt among the learner ranks of each node (docs/devices.md).",
    )
    gpu_oversubscription: Literal["warn", "share", "strict"] = Field(
        default="warn",
        description="More learner ranks on a node than GPUs: warn (share them round-robin and say so), share "
        "(the same, silently) or strict (a start-up error; GPUs in exclusive-process mode need it).",
    )
    deterministic: bool = Field(
        default=False,
        description="Deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic, "
        "CUBLAS_WORKSPACE_CONFIG): with it a sync run on GPUs repeats bit for bit for a seed and layout; "
        "slower, and an error for an op without a deterministic kernel. CPU runs repeat without it.",
    )
    cache_size: int = Field(default=16, ge=1, description="Opponent weights kept, keyed by (policy, version).")
    torch_threads: int = Field(default=1, ge=1, description="torch threads per rank.")
    # -- scaling one policy over several ranks (mpimarl/roles/group.py, mpimarl/roles/actor.py) --
    ranks_per_policy: int | dict[str, int] = Field(
        default=1,
        description="Learner ranks that train each policy together (data-parallel PPO, DD-PPO): consecutive "
        "ranks, each on its own environment copies, averaging gradients with Allreduce; ppo.rollout_steps "
        "stays the policy's batch (each rank collects its share). An int for every role, or {role: int}.",
    )
    # -- DD-PPO's straggler cut-off for learner groups (mpimarl/comm/group.py RolloutNotices) --
    straggler_cutoff: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Learner groups (DD-PPO's preemption threshold): once this share of a group's ranks has "
        "collected its whole rollout, the others stop collecting and the group updates on what it has "
        "(gradients weighted by each rank's sample count). 1.0: off, every rank collects its whole share. "
        "Below 1 the update depends on timing, so it needs schedule.mode 'async'.",
    )
    straggler_min_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Learner groups with trainer.straggler_cutoff < 1: the share of its rollout every rank "
        "collects before the cut-off may stop it (DD-PPO uses 0.25).",
    )

    def ranks_for(self, role: str) -> int:
        """trainer.ranks_per_policy of `role`."""
        v = self.ranks_per_policy
        return v if isinstance(v, int) else v.get(role, 1)

    # -- IMPALA actor ranks (mpimarl/roles/actor.py) --
    actors_per_learner: int | dict[str, int] = Field(
        default=0,
        description="Actor ranks feeding each policy's learner (IMPALA): they only play, with the newest "
        "weights they received, and stream trajectory segments to the learner, which learns with V-trace "
        "targets (trainer.vtrace_rho_bar, trainer.vtrace_c_bar) and does not play itself. 0: no actors. "
        "Needs trainer.ranks_per_policy 1 and ppo.advantage gae (not COMA) for that role. "
        "An int for every role, or {role: int}.",
    )
    max_policy_lag: int | None = Field(
        default=1,
        ge=0,
        description="Async IMPALA actors: a segment played with weights more than this many updates older than "
        "the learner's is discarded, not learned from (its steps still count); the train table's "
        "segments_dropped says how many. V-trace corrects a small lag, but its truncated importance weights "
        "(rho_bar, c_bar) cut off most of the correction when the lag is large: CartPole with an async actor "
        "reached 475 at 23k steps with 1, first at 125k and unstably with 4, never in 200k unbounded "
        "(benchmarks/results/actors_cartpole_lag.md). None: keep every segment.",
    )
    vtrace_rho_bar: float = Field(
        default=1.0, gt=0, description="V-trace truncation of the importance weights rho (learners fed by actors).")
    vtrace_c_bar: float = Field(
        default=1.0, gt=0, description="V-trace truncation of the trace coefficients c (at most vtrace_rho_bar).")
    vtrace_lambda: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="V-trace's lambda (IMPALA, remark 5 of section 4.1): c_i = lambda * min(c_bar, rho_i), so "
        "on-policy targets are TD(lambda) returns; 1 is plain V-trace (n-step returns). None: ppo.gae_lambda, "
        "the lambda a trainer without actors uses.",
    )

    def actors_for(self, role: str) -> int:
        """trainer.actors_per_learner of `role`."""
        v = self.actors_per_learner
        return v if isinstance(v, int) else v.get(role, 0)

    def unit_ranks(self, role: str) -> int:
        """Ranks of one policy of `role`: its learner ranks plus its actor ranks."""
        return self.ranks_for(role) + self.actors_for(role)


class ServerConfig(_Section):
    """Rank 0's watchdog and progress output."""

    timeout_s: float = Field(
        default=900.0, gt=0, description="Abort the job when a peer is silent this long (stuck rank)."
    )
    progress_interval_s: float = Field(default=10.0, gt=0, description="Seconds between plain progress lines.")


class CheckpointConfig(_Section):
    """What a resume needs, saved at generation boundaries (`mpimarl train ... --resume`)."""

    every: int = Field(
        default=1,
        ge=0,
        description="Save a checkpoint every this many generations (async: per trainer on average, at a "
        "cut where trainers wait for each other; the last generation and a time-limit stop are always "
        "saved). With checkpoints on, every generation starts fresh "
        "episodes (running ones end, bootstrapped) so a resumed run repeats an uninterrupted one "
        "exactly. 0: no checkpoints, no resume.",
    )
    keep: int = Field(
        default=3,
        ge=3,
        description="Checkpoints each rank keeps, the newest (at least 3: a trainer can save generation "
        "g+1 while a slower one still writes g, so only g-1 is sure to be whole on every rank).",
    )



class PoolConfig(_Section):
    """Rank 0's policy pool at scale: the weights it keeps in memory, the snapshots whose weights the run
    file keeps, how often trainers publish, and how the run file's commits are grouped (docs/pool.md).
    The defaults keep every snapshot's weights, publish every generation and commit every change at
    once, so a small run behaves as before; only rank 0's memory is bounded by default."""

    cache_mb: float | None = Field(
        default=256.0,
        gt=0,
        description="Megabytes of snapshot weights rank 0 keeps in memory (least recently used go first; "
        "the run file serves the rest). None: no limit in megabytes.",
    )
    cache_snapshots: int | None = Field(
        default=None,
        ge=1,
        description="At most this many snapshots' weights in rank 0's memory (None: no limit in snapshots).",
    )
    keep_latest: int | None = Field(
        default=None,
        ge=0,
        description="Retention: the latest this many snapshots of every policy keep their weights. None (the "
        "default): every snapshot keeps its weights and the other keep_* settings do not apply.",
    )
    keep_every: int | None = Field(
        default=None,
        ge=1,
        description="Retention: also keep forever the weights of every version that is a multiple of this "
        "(version 0 included). None: none kept for their version.",
    )
    keep_weight_above: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Retention: also keep forever a snapshot whose weight in the matchmaker's distribution "
        "(its meta-strategy: pfsp, psro, ...) is above this when it leaves the latest keep_latest. None: "
        "not used.",
    )
    keep: list[str] = Field(
        default_factory=list,
        description="Retention: snapshots that keep their weights forever, as 'policy_id@version' (anchors).",
    )
    archive: Literal["none", "float16"] = Field(
        default="none",
        description="What a snapshot the retention drops keeps in the run file: 'none' (metadata and ratings "
        "only) or 'float16' (a half-precision copy for analysis; matchmakers never draw it).",
    )
    compression: Literal["none", "gzip", "lzf"] = Field(
        default="none",
        description="Lossless compression of stored weights in the run file (HDF5 filters; h5py reads "
        "them transparently). See docs/pool.md for the measured size and time.",
    )
    publish_every: int = Field(
        default=1,
        ge=1,
        description="Async schedule: a trainer publishes a snapshot every this many generations (its last "
        "generation always publishes). 1: every generation.",
    )
    publish_every_s: float | None = Field(
        default=None,
        gt=0,
        description="Async schedule: a trainer publishes at most once per this many seconds (its last "
        "generation always publishes; with publish_every, both must be due). None: no time limit.",
    )
    commit_window_s: float = Field(
        default=0.0,
        ge=0,
        description="Group the run file's commits: rank 0 commits (journal + fsync) what arrived within this "
        "many seconds at once. 0: commit every change at once. A kill leaves the last whole commit, so "
        "at most this window of rows is lost (and recorded again by a resume from a checkpoint).",
    )

    @property
    def retention(self) -> bool:
        """Whether the retention policy drops weights (keep_latest is set)."""
        return self.keep_latest is not None

    def anchor_keys(self) -> list[tuple[str, int]]:
        """The `keep` entries as (policy_id, version)."""
        out = []
        for item in self.keep:
            pid, _, version = item.rpartition("@")
            out.append((pid, int(version)))
        return out

    @field_validator("keep")
    @classmethod
    def _check_keep(cls, value: list[str]) -> list[str]:
        for item in value:
            pid, at, version = item.rpartition("@")
            if not at or not pid or not version.isdigit():
                raise ValueError(f"pool.keep: {item!r} is not 'policy_id@version' (e.g. 'player-0@120')")
        return value

class LoggingConfig(_Section):
    """Views of the run besides its run file (the run file stays the record)."""

    tensorboard: bool = Field(
        default=False,
        description="Rank 0 also writes TensorBoard event files while the run goes (returns, losses, steps/s "
        "and wait per policy; ratings, scores against baselines and exploitability per role; effective "
        "support and pool size per role), into tensorboard_dir. Needs the extra: pip install -e "
        "'.[tensorboard]'. `mpimarl tensorboard RUN.h5` writes the same files afterwards.",
    )
    tensorboard_dir: str = Field(
        default="tensorboard",
        min_length=1,
        description="Folder of the live event files, relative to the run folder (or absolute).",
    )


def _check_per_role(key: str, value: int | dict[str, int], roles: set[str], minimum: int,
                    why: str) -> None:
    """A count given for every role (an int) or per role (a dict): every named role exists and every
    count is at least `minimum` (else ValueError naming `key` and `why`)."""
    per_role = value if isinstance(value, dict) else {"*": value}
    unknown = sorted(set(per_role) - roles - {"*"})
    if unknown:
        raise ValueError(f"{key}: unknown roles {unknown}; the roles are {sorted(roles)}")
    bad = {r: n for r, n in per_role.items() if n < minimum}
    if bad:
        raise ValueError(f"{key}: {bad}; {why}")


class RunConfig(_Section):
    """One experiment: the environment, the task's roles, the learner, the league and the schedule."""

    name: str = Field(default="run", description="Experiment name, recorded in the run file.")
    seed: int = Field(default=0, ge=0, description="Root seed; every rank derives its own from it.")
    env: EnvConfig
    task: TaskConfig
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    matchmaking: MatchmakingConfig = Field(default_factory=MatchmakingConfig)
    baselines: list[BaselineConfig] = Field(
        default_factory=list, description="Scripted opponents/partners: evaluation anchors, optionally trained against."
    )
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        roles = set(self.role_names)
        names = [b.name for b in self.baselines]
        if len(set(names)) != len(names):
            raise ValueError(f"baselines: names must be unique, got {names}")
        for i, b in enumerate(self.baselines):
            unknown = sorted(set(b.roles or []) - roles)
            if unknown:
                raise ValueError(f"baselines[{i}] ({b.name}): unknown roles {unknown}; the roles are {sorted(roles)}")
            if b.kwargs and b.policy.strip() in _registered_baselines():
                # Registered policies are mpimarl's own and always importable: check their parameters
                # now. An import path's are checked when the run starts (RunContext.check_league).
                from mpimarl.baselines.scripted import check_policy_kwargs

                try:
                    check_policy_kwargs(b.policy.strip(), b.kwargs)
                except ConfigError as exc:
                    raise ValueError(f"baselines[{i}] ({b.name}).kwargs: {exc}") from None
        shares = self.matchmaking.baseline_fraction + sum(b.train_fraction for b in self.baselines)
        if shares > 1.0 + 1e-9:
            raise ValueError(
                f"matchmaking.baseline_fraction plus the baselines' train_fraction is {shares:g}; at most 1"
            )
        _check_per_role("trainer.ranks_per_policy", self.trainer.ranks_per_policy, roles, 1,
                        "every group needs at least 1 rank")
        self._check_actors(roles)
        if self.trainer.straggler_cutoff < 1 and self.schedule.mode == "sync":
            raise ValueError(
                f"trainer.straggler_cutoff {self.trainer.straggler_cutoff:g} needs schedule.mode 'async': the "
                "cut-off depends on which rank is slower, and sync runs are promised to be deterministic")
        ev = self.evaluation
        unknown = sorted(set(ev.communication_roles) - roles)
        if unknown:
            raise ValueError(f"evaluation.communication_roles: unknown roles {unknown}; the roles are {sorted(roles)}")
        if ev.communication_roles and self.task.kind != "cooperative":
            raise ValueError("evaluation.communication_roles is for cooperative tasks (task.kind 'cooperative')")
        for role in self.task.roles:
            if self.advantage_of(role.name) == "coma" and self.critic_of(role.name) == "local":
                raise ValueError(f"ppo.advantage 'coma' (role {role.name!r}) needs a centralised critic: set "
                                 "ppo.critic (or the role's critic) to 'state' or 'agent_state' "
                                 "(agent_state when one policy drives several agents)")
        if self.matchmaking.strategy == "psro" and not (ev.exact_payoff or ev.pool_episodes > 0):
            raise ValueError(
                "matchmaking.strategy 'psro' needs payoff entries between pool members: set "
                "evaluation.pool_episodes > 0 (or evaluation.exact_payoff: true on an OpenSpiel game)"
            )
        if self.matchmaking.strategy == "pfsp" and not (ev.exact_payoff or ev.pool_episodes > 0):
            raise ValueError(
                "matchmaking.strategy 'pfsp' weighs opponents by the learner's win rate in the payoff "
                "table: set evaluation.pool_episodes > 0"
            )
        self._check_pool()
        return self

    def _check_pool(self) -> None:
        """pool: retention settings that only make sense together, and cadence only where it applies."""
        p = self.pool
        if p.keep_latest == 0:
            raise ValueError(
                "pool.keep_latest 0 would leave the matchmaker nothing to draw: a policy's latest snapshot is "
                "what its trainer and the matchmakers use; set pool.keep_latest to 1 or more")
        if not p.retention:
            used = [k for k in ("keep_every", "keep_weight_above") if getattr(p, k) is not None]
            if used or p.keep or p.archive != "none":
                what = used + (["keep"] if p.keep else []) + (["archive"] if p.archive != "none" else [])
                raise ValueError(f"pool.{what[0]} is part of the retention policy, which is off: set "
                                 "pool.keep_latest (e.g. 8) to drop the weights of older snapshots")
        if (p.publish_every != 1 or p.publish_every_s is not None) and self.schedule.mode == "sync":
            raise ValueError(
                f"pool.publish_every {p.publish_every} / pool.publish_every_s {p.publish_every_s} need schedule.mode "
                "'async': a sync generation is one published snapshot per trainer (use a larger "
                "schedule.steps_per_generation instead)")
        if p.keep_weight_above is not None and self.matchmaking.strategy in ("latest",):
            raise ValueError("pool.keep_weight_above reads the matchmaker's distribution over snapshots; "
                             "matchmaking.strategy 'latest' draws only the latest snapshots")

    def _check_actors(self, roles: set[str]) -> None:
        """trainer.actors_per_learner: known roles, counts >= 0, and only where the learner can use them."""
        t = self.trainer
        _check_per_role("trainer.actors_per_learner", t.actors_per_learner, roles, 0, "a count of actors is 0 or more")
        if t.vtrace_c_bar > t.vtrace_rho_bar:
            raise ValueError(f"trainer.vtrace_c_bar {t.vtrace_c_bar} > trainer.vtrace_rho_bar {t.vtrace_rho_bar}; "
                             "V-trace needs c_bar <= rho_bar")
        for role in self.role_names:
            if t.actors_for(role) == 0:
                continue
            if t.ranks_for(role) != 1:
                raise ValueError(
                    f"trainer.actors_per_learner {t.actors_for(role)} with trainer.ranks_per_policy "
                    f"{t.ranks_for(role)} (role {role!r}): actors feed a single learner rank; use either "
                    "learner groups or actors for a role, not both")
            if self.advantage_of(role) != "gae":
                raise ValueError(
                    f"trainer.actors_per_learner (role {role!r}) needs ppo.advantage 'gae' (got "
                    f"{self.advantage_of(role)!r}): COMA's Q critic reads the other agents' actions of the same "
                    "step, which actors do not stream; value normalisation and the centralised V critics "
                    "(ppo.critic state, agent_state) work with actors")

    @property
    def vtrace_lambda(self) -> float:
        """V-trace's lambda: trainer.vtrace_lambda, or ppo.gae_lambda when that is unset."""
        lam = self.trainer.vtrace_lambda
        return self.ppo.gae_lambda if lam is None else lam

    @property
    def role_names(self) -> list[str]:
        """Role names in config order."""
        return [r.name for r in self.task.roles]

    def critic_of(self, role: str) -> str:
        """The critic input of `role`: its own `critic` when set, else ppo.critic."""
        rc = next(r for r in self.task.roles if r.name == role)
        return rc.critic or self.ppo.critic

    def advantage_of(self, role: str) -> str:
        """The advantage estimator of `role`: its own `advantage` when set, else ppo.advantage."""
        rc = next(r for r in self.task.roles if r.name == role)
        return rc.advantage or self.ppo.advantage

    def min_world_size(self) -> int:
        """The server plus one main policy per role (each with its learner ranks), plus each role's
        exploiters (matchmaking.exploiters)."""
        return 1 + (1 + self.matchmaking.exploiters) * sum(self.trainer.unit_ranks(r) for r in self.role_names)


# ---------------------------------------------------------------------------------------------
# Loading, overrides and error messages
# ---------------------------------------------------------------------------------------------


def _model_at(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The config model class found by following `path` from RunConfig, or None."""
    model: type[BaseModel] = RunConfig
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidates = [annotation, *(inner or ())]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model


def _describe(error: dict[str, Any]) -> str:
    """One line for one pydantic error, naming the dotted key, the bad value and what is allowed."""
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc) or "<root>"
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        valid = sorted(model.model_fields) if model else []
        near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        return f"unknown key '{key}'{hint} (valid keys here: {', '.join(valid)})"
    if error["type"] == "missing":
        return f"missing required key '{key}'"
    value = error.get("input")
    msg = error["msg"]
    if error["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
        if not loc:  # a cross-field check of the whole config: its message names the keys
            return msg
    if error["type"] == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"'{key}' = {value!r} is not allowed; expected {allowed}"
    return f"'{key}' = {value!r}: {msg}"


def parse_config(data: Any, source: str = "config") -> RunConfig:
    """Validate a plain dict as a RunConfig, raising ConfigError with every problem named."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


def _set_path(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    """Set data[a][b][c] = value for dotted 'a.b.c', checking each key against the config tree."""
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"{source}: override key '{dotted}' is not a dotted path like ppo.learning_rate")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        model = _model_at(tuple(parts[:depth]))
        if model is not None and part not in model.model_fields:
            near = difflib.get_close_matches(part, sorted(model.model_fields), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"{source}: unknown key '{'.'.join(parts[: depth + 1])}'{hint}")
        child = node.get(part) if isinstance(node, dict) else None
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: cannot set '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (values parsed as YAML: numbers, booleans, lists)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_path(data, key.strip(), value, source=f"override '{item}'")
    return data


MAX_CONFIG_VALUES = 1_000_000
"""A config that expands to more values than this (YAML aliases of aliases, a "billion laughs") is
refused at load instead of exhausting memory when it is validated or recorded."""


def _expanded_size(data: Any, memo: dict[int, int | None] | None = None) -> int:
    """How many values `data` holds once YAML aliases are expanded (each shared node counted once
    per reference, computed once per node). A node that contains itself raises ValueError."""
    memo = {} if memo is None else memo
    if not isinstance(data, (dict, list)):
        return 1
    if id(data) in memo:
        size = memo[id(data)]
        if size is None:
            raise ValueError("a YAML alias refers to a value that contains it (a cycle)")
        return size
    memo[id(data)] = None  # in progress
    items = data.values() if isinstance(data, dict) else data
    size = 1 + sum(min(_expanded_size(x, memo), MAX_CONFIG_VALUES + 1) for x in items)
    memo[id(data)] = size
    return size


def _check_expansion(data: Any, source: str) -> None:
    """ConfigError for a config that cycles or expands past MAX_CONFIG_VALUES (YAML aliases)."""
    try:
        size = _expanded_size(data)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if size > MAX_CONFIG_VALUES:
        raise ConfigError(f"{source} expands to more than {MAX_CONFIG_VALUES:,} values (YAML aliases nested too deep?)")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with clear errors for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{p}' is not valid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file '{p}' cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{p}' is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    _check_expansion(data, f"config file '{p}'")
    if data is None:
        raise ConfigError(f"config file '{p}' is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}': the top level must be a mapping of keys")
    return data


def load_config(path: str | Path, overrides: list[str] | None = None, *, steps: int | None = None,
                seed: int | None = None) -> RunConfig:
    """Load, override and validate a config file. `steps`/`seed` are the CLI's --steps/--seed."""
    data = read_config_file(path)
    apply_overrides(data, list(overrides or []))
    if overrides:
        _check_expansion(data, f"{path} with overrides {' '.join(overrides)}")
    if steps is not None:
        _set_path(data, "schedule.total_steps", steps, source="--steps")
    if seed is not None:
        data["seed"] = seed
    return parse_config(data, source=str(path))


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (what the run file records)."""
    return config.model_dump(mode="json")
