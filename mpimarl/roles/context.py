"""What every rank knows about a run before any message is sent.

All ranks load the same config and probe the same environment, so they agree on the roles, the
network shapes and which trainer plays which role without asking each other.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpimarl.algos.shapes import PolicyShape, RandomPolicy
from mpimarl.config import RunConfig
from mpimarl.envs.loader import OPENSPIEL_PREFIX, EnvFactory, resolve_env
from mpimarl.envs.spec import EnvSpec, RoleRule, build_env_spec
from mpimarl.envs.state import StateSpec, probe_state
from mpimarl.errors import ConfigError, EnvironmentSpecError, WorldSizeError
from mpimarl.league.pool import RANDOM_POLICY_ID


@dataclass(frozen=True)
class PolicyUnit:
    """The consecutive ranks that train one policy: its learner ranks (a data-parallel group when
    more than one; the first is the leader, the only one that talks to rank 0), then its IMPALA
    actor ranks (trainer.actors_per_learner; they talk to the learner only)."""

    policy_id: str
    role: str
    learners: tuple[int, ...]
    actors: tuple[int, ...] = ()

    @property
    def leader(self) -> int:
        """The rank that speaks to the server for the whole unit."""
        return self.learners[0]

    @property
    def ranks(self) -> tuple[int, ...]:
        """Every rank of the unit, in order."""
        return self.learners + self.actors


@dataclass
class RunContext:
    """The config, the environment and the rank -> role/policy layout of one run."""

    config: RunConfig
    factory: EnvFactory
    spec: EnvSpec
    world_size: int
    _shapes: dict[str, PolicyShape] = field(default_factory=dict)
    _state_spec: StateSpec | None = None
    _units: list[PolicyUnit] | None = None
    _by_rank: dict[int, PolicyUnit] = field(default_factory=dict)
    learning_roles: tuple[str, ...] = ()
    """Roles that get trainer ranks, in dealing order (empty: every role of the task). An exploit job
    (mpimarl/exploit.py) trains only the roles that face its target."""
    id_prefix: str = ""
    """Prefix of every trained policy's id ('exploiter-' in an exploit job, so that its learners never
    share an id with the target snapshots of the run they exploit)."""
    all_exploiters: bool = False
    """Every trained policy is an exploiter (an exploit job: all train against fixed targets only)."""

    @staticmethod
    def build(config: RunConfig, world_size: int | None) -> RunContext:
        """Resolve the environment and check the world size (None: no MPI, e.g. `mpimarl check`)."""
        factory = resolve_env(config.env.id, config.env.kwargs)
        rules = [RoleRule(r.name, r.agents, r.team) for r in config.task.roles]
        spec = build_env_spec(factory, rules)
        ctx = RunContext(config, factory, spec, world_size or config.min_world_size())
        if world_size is not None:
            ctx.check_world_size()
        ctx.check_league()
        ctx.check_pool_anchors(world_size is not None)
        return ctx

    def check_league(self) -> None:
        """Start-up checks that need the environment: network shapes, scripted baselines (imported and
        played for a few episodes, every action checked) and exact evaluation options."""
        self.check_critics()
        for role in self.spec.roles:
            try:
                self.shape(role)
            except ValueError as exc:
                raise ConfigError(f"ppo.torso {self.config.ppo.torso!r}: {exc}") from None
        self.check_pool_cache()
        if self.config.baselines:
            from mpimarl.baselines import check_scripted

            for b in self.config.baselines:
                for role in b.roles or list(self.spec.roles):
                    check_scripted(b.policy, self.factory, self.spec, role, kwargs=b.kwargs)
        ev = self.config.evaluation
        if ev.exact_payoff or ev.exploitability:
            from mpimarl.league.exploitability import supports_exploitability

            if not supports_exploitability(self.config.env.id, self.config.env.kwargs):
                key = "evaluation.exploitability" if ev.exploitability else "evaluation.exact_payoff"
                raise ConfigError(
                    f"{key} is on, but env {self.config.env.id!r} is not a small zero-sum OpenSpiel game "
                    "whose tree can be walked exactly (use an 'openspiel:' id such as openspiel:kuhn_poker, "
                    "or set it to false)"
                )

    def check_pool_cache(self) -> None:
        """pool.cache_mb must hold at least one snapshot of the largest network (rank 0 serves weights
        from its cache; a snapshot that never fits would be read from the run file at every use)."""
        mb = self.config.pool.cache_mb
        if mb is None:
            return
        sizes = {role: 4 * self.shape(role).num_weights for role in self.spec.roles}
        role, largest = max(sizes.items(), key=lambda item: item[1])
        if mb * 2**20 < largest:
            raise ConfigError(
                f"pool.cache_mb {mb:g} is smaller than one snapshot of role {role!r} "
                f"({largest / 2**20:.3f} MB of float32 weights); set it to at least {largest / 2**20:.3f} "
                "(or null for no limit)")

    def check_pool_anchors(self, world_size_known: bool) -> None:
        """pool.keep names snapshots this run will publish: a policy id it creates and a version it
        reaches, or the anchor would silently keep nothing. Policy ids depend on the world size: with it
        unknown (`mpimarl check`), an id only has to be '<role>-<k>' for a role that trains."""
        pc = self.config.pool
        if not pc.keep:
            return
        ids = [u.policy_id for u in self.units]
        last = self.generations
        for item, (policy_id, version) in zip(pc.keep, pc.anchor_keys(), strict=True):
            role, _, index = policy_id.rpartition("-")
            if world_size_known and policy_id not in ids:
                raise ConfigError(
                    f"pool.keep: {item!r} names policy {policy_id!r}, which this run does not create; with "
                    f"{self.world_size} ranks its policies are {', '.join(ids)}")
            if not world_size_known and (role not in self.unit_roles or not index.isdigit()):
                raise ConfigError(
                    f"pool.keep: {item!r} names policy {policy_id!r}, which no run of this config creates; "
                    f"policy ids are '<role>-<k>' (k = 0, 1, ... one per trainer of the role), roles "
                    f"{', '.join(repr(r) for r in self.unit_roles)}: e.g. {ids[0]!r}")
            if version > last:
                raise ConfigError(
                    f"pool.keep: {item!r} names version {version}, but each policy publishes versions 0..{last} "
                    f"({last} generations of schedule.total_steps {self.config.schedule.total_steps})")
            every = pc.publish_every if self.config.schedule.mode == "async" else 1
            if version % every and version != last:
                raise ConfigError(
                    f"pool.keep: {item!r} names version {version}, which pool.publish_every {every} never "
                    f"publishes (only multiples of {every} and the last version, {last})")

    # -- centralised critics (MAPPO, COMA) -------------------------------------------------------
    def central(self, role: str) -> bool:
        """Whether `role`'s critic reads the global state."""
        return self.config.critic_of(role) != "local"

    def coma(self, role: str) -> bool:
        """Whether `role` learns with COMA's counterfactual advantage."""
        return self.config.advantage_of(role) == "coma"

    @property
    def state_spec(self) -> StateSpec:
        """The environment's global state (probed once, on a fresh copy reset with seed 0)."""
        if self._state_spec is None:
            env = self.factory()
            try:
                env.reset(seed=0)
                self._state_spec = probe_state(env, self.config.env.id)
            finally:
                env.close()
        return self._state_spec

    def joint_actions(self) -> Any:
        """COMA's encoder of the other agents' actions (every agent's action space is Discrete)."""
        from mpimarl.rollout.critic_inputs import JointActions

        counts = {a: int(self.spec.roles[self.spec.role_of[a]].action_space.n) for a in self.spec.agents}
        return JointActions(self.spec.agents, counts)

    def learner_options(self, role: str) -> dict[str, Any]:
        """Keyword arguments of `PPOLearner` for `role`: the advantage and COMA's others-actions size."""
        if not self.coma(role):
            return {"advantage": "gae"}
        return {"advantage": "coma", "others_size": self.joint_actions().others_size(self.spec.roles[role].agents[0])}

    def critic_inputs(self, role: str, envs: list[Any]) -> Any:
        """What the runner feeds `role`'s centralised critic from `envs` (None for a local critic)."""
        if not self.central(role):
            return None
        from mpimarl.rollout.critic_inputs import CriticInputs

        return CriticInputs(envs, self.state_spec, self.config.critic_of(role),
                            self.joint_actions() if self.coma(role) else None)

    def check_critics(self) -> None:
        """Start-up checks of centralised critics and COMA: a state exists, all actions are Discrete."""
        for role in self.spec.roles:
            if self.central(role):
                key = "ppo.advantage 'coma'" if self.coma(role) else f"ppo.critic {self.config.critic_of(role)!r}"
                try:
                    self.state_spec  # noqa: B018 - probing raises when the env has no state
                except EnvironmentSpecError as exc:
                    raise EnvironmentSpecError(f"{key} (role {role!r}): {exc}") from None
            if not self.coma(role):
                continue
            for agent in self.spec.agents:
                space = self.spec.roles[self.spec.role_of[agent]].action_space
                if not hasattr(space, "n"):
                    whose = "its" if self.spec.role_of[agent] == role else f"a partner's (agent {agent!r})"
                    raise ConfigError(
                        f"ppo.advantage 'coma' (role {role!r}) needs Discrete actions, but {whose} action "
                        f"space is {space}: COMA's critic outputs one Q per action and reads the other "
                        "agents' actions as one-hot vectors; use ppo.advantage 'gae' (MAPPO) for continuous "
                        "actions, e.g. env.kwargs.continuous_actions: false on MPE")

    def baseline_policies(self, seed: int) -> dict[Hashable, Any]:
        """Acting policies of every fixed baseline, keyed as the runner groups agents: (name, role)."""
        out: dict[Hashable, Any] = {}
        for i, (role, rs) in enumerate(self.spec.roles.items()):
            out[(RANDOM_POLICY_ID, role)] = RandomPolicy(rs.action_space, np.random.default_rng(seed + i))
        if self.config.baselines:
            from mpimarl.baselines import load_scripted

            for j, b in enumerate(self.config.baselines):
                for role in b.roles or list(self.spec.roles):
                    out[(b.name, role)] = load_scripted(b.policy, self.spec.roles[role].action_space,
                                                        seed + 1000 * (j + 1), b.kwargs)
        return out

    def _exact_option(self, value: bool | None) -> bool:
        """An exact-evaluation option resolved: None means on where the game allows it."""
        if value is not None:
            return value
        if not str(self.config.env.id).startswith(OPENSPIEL_PREFIX):
            return False  # without importing open_spiel (half a second) for every other environment
        from mpimarl.league.exploitability import supports_exploitability

        return supports_exploitability(self.config.env.id, self.config.env.kwargs)

    @property
    def exact_payoff(self) -> bool:
        """Whether payoffs between snapshots are exact expected returns (evaluation.exact_payoff resolved)."""
        return self._exact_option(self.config.evaluation.exact_payoff)

    @property
    def measures_exploitability(self) -> bool:
        """Whether exploitability is recorded (evaluation.exploitability resolved)."""
        return self._exact_option(self.config.evaluation.exploitability)

    def exploitability_meter(self) -> Any:
        """The exact evaluator of this run (exploitability, exact payoffs), or None where both are off."""
        if not (self.exact_payoff or self.measures_exploitability):
            return None
        from mpimarl.rollout.exact import ExploitabilityMeter

        return ExploitabilityMeter(self.config.env.id, self.config.env.kwargs,
                                   [self.spec.role_of[a] for a in self.spec.agents], self.shape)

    @property
    def unit_roles(self) -> list[str]:
        """The roles dealt trainer ranks, in order: `learning_roles`, else every role of the task."""
        return list(self.learning_roles) or self.config.role_names

    def min_world_size(self) -> int:
        """The server plus one policy (its whole unit of ranks) per role of `unit_roles`, plus each
        role's exploiters (matchmaking.exploiters)."""
        if not self.learning_roles:
            return self.config.min_world_size()
        return 1 + sum(self.config.trainer.unit_ranks(r) for r in self.learning_roles)

    def check_world_size(self) -> None:
        """One server and at least one policy per role; the trainer ranks split into whole units."""
        need = self.min_world_size()
        if self.world_size < need:
            roles = ", ".join(self.unit_roles)
            exploiters = 0 if self.all_exploiters else self.config.matchmaking.exploiters
            raise WorldSizeError(
                f"world size {self.world_size} is too small for config '{self.config.name}': rank 0 is "
                f"the server and each role ({roles}) needs at least one {self._unit_words()}"
                f"{'' if not exploiters else f' plus {exploiters} exploiter(s) (matchmaking.exploiters)'}, so at "
                f"least {need} ranks are needed (e.g. mpiexec -n {need + (need == 2)} ...)"
            )
        self.units  # noqa: B018 - raises WorldSizeError when the ranks do not split into whole units

    # -- layout -----------------------------------------------------------------------------------
    def _unit_size(self, role: str) -> int:
        return self.config.trainer.unit_ranks(role)

    def _unit_words(self) -> str:
        t = self.config.trainer
        if any(t.actors_for(r) for r in self.config.role_names):
            sizes = ", ".join(f"{r}: {t.ranks_for(r)} + {t.actors_for(r)}" for r in self.config.role_names)
            return (f"block of consecutive ranks per policy (a learner plus its actors; "
                    f"trainer.ranks_per_policy + trainer.actors_per_learner: {sizes})")
        if all(t.ranks_for(r) == 1 for r in self.config.role_names):
            return "trainer"
        sizes = ", ".join(f"{r}: {t.ranks_for(r)}" for r in self.config.role_names)
        return f"group of consecutive ranks per policy (trainer.ranks_per_policy {sizes})"

    @property
    def units(self) -> list[PolicyUnit]:
        """The policies and their ranks: blocks of consecutive ranks dealt to the roles round-robin.

        With one rank per policy this is the classic layout (rank 1 -> first role, rank 2 -> second,
        ...). A block never spans roles; ranks left over that cannot fill a whole block are an error.
        """
        if self._units is not None:
            return self._units
        names = self.unit_roles
        units: list[PolicyUnit] = []
        counts = dict.fromkeys(names, 0)
        rank = 1
        j = 0
        while rank < self.world_size:
            role = names[j % len(names)]
            size = self._unit_size(role)
            if rank + size > self.world_size:
                left = self.world_size - rank
                raise WorldSizeError(
                    f"world size {self.world_size}: trainer.ranks_per_policy"
                    f"{' + trainer.actors_per_learner' if self._has_actors else ''} deals "
                    f"the trainer ranks 1..{self.world_size - 1} to policies in blocks of consecutive ranks "
                    f"({', '.join(f'{r}: {self._unit_size(r)}' for r in names)}), roles in turn; the last "
                    f"{left} rank(s) ({rank}..{self.world_size - 1}) cannot form a whole block of role "
                    f"{role!r} ({size} ranks) and a block may not span roles. Valid world sizes near it: "
                    f"{', '.join(map(str, self._valid_sizes_near()))}"
                )
            learners = self.config.trainer.ranks_for(role)
            units.append(PolicyUnit(f"{self.id_prefix}{role}-{counts[role]}", role, tuple(range(rank, rank + learners)),
                                    tuple(range(rank + learners, rank + size))))
            counts[role] += 1
            rank += size
            j += 1
        self._units = units
        self._by_rank = {r: u for u in units for r in u.ranks}
        return units

    @property
    def _has_actors(self) -> bool:
        return any(self.config.trainer.actors_for(r) for r in self.config.role_names)

    def is_actor(self, rank: int) -> bool:
        """Whether `rank` is an IMPALA actor rank (it plays for its unit's learner and never talks to rank 0)."""
        return rank != 0 and rank in self.unit_of(rank).actors

    def _valid_sizes_near(self) -> list[int]:
        names = self.unit_roles
        sizes = [1]
        j = 0
        while sizes[-1] <= self.world_size or len(sizes) < 3:
            sizes.append(sizes[-1] + self._unit_size(names[j % len(names)]))
            j += 1
        valid = [n for n in sizes if n >= self.min_world_size()]
        below = [n for n in valid if n < self.world_size][-2:]
        above = [n for n in valid if n > self.world_size][:2]
        return below + above

    def unit_of(self, rank: int) -> PolicyUnit:
        """The policy unit trainer rank `rank` belongs to."""
        self.units  # noqa: B018 - builds the rank index
        if rank not in self._by_rank:
            raise ValueError(f"rank {rank} is not a trainer rank (world size {self.world_size})")
        return self._by_rank[rank]

    @property
    def leader_ranks(self) -> list[int]:
        """The rank of each policy that talks to the server, in rank order."""
        return [u.leader for u in self.units]

    @property
    def num_trainers(self) -> int:
        """Ranks 1..N-1."""
        return self.world_size - 1

    @property
    def num_policies(self) -> int:
        """Policies trained in the run (one per unit)."""
        return len(self.units)

    def trainer_role(self, rank: int) -> str:
        """The role of the policy trainer `rank` works for (rank 1 -> first role, ... with one rank per policy)."""
        return self.unit_of(rank).role

    def policy_id(self, rank: int) -> str:
        """The id of the policy trainer `rank` works for, e.g. 'player-0', 'predator-1'."""
        return self.unit_of(rank).policy_id

    def exploiter_ids(self) -> list[str]:
        """Policy ids of the main exploiters: the last `matchmaking.exploiters` policies of each role
        (every policy with `all_exploiters`)."""
        if self.all_exploiters:
            return [u.policy_id for u in self.units]
        k = self.config.matchmaking.exploiters
        if not k:
            return []
        out: list[str] = []
        for role in self.config.role_names:
            out += [u.policy_id for u in self.units if u.role == role][-k:]
        return out

    def shape(self, role: str) -> PolicyShape:
        """The network shape for `role`.

        Raises ValueError naming the role when its observation cannot feed the configured torso
        (a conv torso on a flat observation).
        """
        if role not in self._shapes:
            rs = self.spec.roles[role]
            ppo = self.config.ppo
            # getattr keeps this working with a PPOConfig that lacks the torso fields.
            torso = getattr(ppo, "torso", "mlp")
            channels = tuple(getattr(ppo, "conv_channels", (32, 64)))
            critic_input, critic_outputs = 0, 1
            if self.central(role):
                critic_input = self.state_spec.input_size(self.config.critic_of(role), rs.agents[0])
                if self.coma(role):
                    critic_input += self.joint_actions().others_size(rs.agents[0])
                    critic_outputs = int(rs.action_space.n)
            try:
                shape = PolicyShape(rs.obs_size, rs.action_space, tuple(ppo.hidden), ppo.activation,
                                    obs_shape=rs.obs_shape, torso=torso, conv_channels=channels,
                                    critic_input=critic_input, critic_outputs=critic_outputs,
                                    obs_norm=getattr(ppo, "obs_norm", False))
            except ValueError as exc:
                raise ValueError(f"role {role!r}: {exc}") from exc
            self._shapes[role] = shape
        return self._shapes[role]

    @property
    def generations(self) -> int:
        """Snapshots each trainer publishes after its initial version 0."""
        return self.config.schedule.generations()

    def learning_progress(self, steps: int, start: int, budget: int) -> float:
        """Where a learner is in its training, in [0, 1], for the annealed settings (ppo.anneal_lr,
        ppo.ent_coef_final): with ppo.reset_each_generation every generation trains a fresh learner, so
        the share of this generation's `budget` done since `start`; otherwise the share of
        schedule.total_steps that `steps` is."""
        if self.config.ppo.reset_each_generation:
            return min(1.0, max(steps - start, 0) / max(budget, 1))
        return min(1.0, steps / self.config.schedule.total_steps)

    def generation_budget(self, generation: int) -> int:
        """Environment steps of generation `generation` (schedule.generation_growth makes them grow)."""
        return self.config.schedule.generation_budget(generation)

    def rank_seed(self, rank: int) -> int:
        """A seed per rank derived from the root seed.

        Ranks' seeds lie a million apart, so the consecutive episode seeds each rank draws from its
        own (seed + episode count) never overlap another rank's within a run.
        """
        return (self.config.seed * 7_919 + rank) * 1_000_003
