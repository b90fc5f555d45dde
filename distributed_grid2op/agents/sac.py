"""Soft actor-critic for continuous (box) actions, CleanRL-style: one readable file, all knobs
in `SACConfig`.

One `SACLearner` owns a squashed-Gaussian actor, two Q networks with Polyak-averaged targets,
a replay buffer and (by default) an automatically tuned entropy temperature (Haarnoja et al.
2018, "Soft Actor-Critic Algorithms and Applications"). Every random number comes from the
learner's own generators (a numpy Generator for the replay sampling, a torch Generator for
the exploration noise), seeded at construction: no global state.

It implements the learner protocol of `distributed_grid2op.agents.learners` (registered there
as ``"sac"`` for box action sets): ``act``, ``record`` (transitions, not trajectories: SAC is
off-policy), ``update``, ``state_dict`` / ``load_state_dict``, ``policy_state`` /
``load_policy_state``. Actions are in the box ``[low, high]`` the learner was made with.

`train_gym` runs it on a gymnasium env with a box action space; the Pendulum test proves it
learns (scored with `learners.evaluate_gym`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch name
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
#: the replay buffer's arrays, in `ReplayBuffer.add`'s argument order
REPLAY_KEYS = ("obs", "actions", "rewards", "next_obs", "dones")


@dataclass
class SACConfig:
    """Every SAC hyper-parameter in one place (defaults: CleanRL's, smaller networks)."""

    hidden: tuple[int, ...] = (128, 128)
    gamma: float = 0.99
    tau: float = 0.005  # Polyak averaging of the target Q networks
    batch_size: int = 128
    buffer_size: int = 100_000
    learning_starts: int = 1_000  # transitions recorded before the first update
    policy_lr: float = 3e-4
    q_lr: float = 1e-3
    policy_frequency: int = 2  # actor (and temperature) updates every this many Q updates
    alpha: float = 0.2  # entropy temperature when not tuned
    autotune: bool = True  # tune alpha towards the target entropy -dim(action)
    reward_scale: float = 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SACConfig:
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", cls.hidden))
        return cls(**d)


def mlp(n_in: int, n_out: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, n_out))


class Actor(nn.Module):
    """Squashed Gaussian policy: ``tanh`` of a Gaussian, rescaled to ``[low, high]``."""

    def __init__(self, n_obs: int, n_act: int, hidden, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.body = mlp(n_obs, 2 * n_act, hidden)
        self.register_buffer("scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))

    def forward(self, x):
        mean, log_std = self.body(x).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, x, generator: torch.Generator | None = None, deterministic: bool = False):
        """``(action, log-probability)``; the noise comes from ``generator``."""
        mean, log_std = self(x)
        if deterministic:
            z = mean
        else:
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
            z = mean + log_std.exp() * eps
        y = torch.tanh(z)
        action = y * self.scale + self.bias
        std = log_std.exp()
        logp = (-0.5 * ((z - mean) / std) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
        logp = logp - torch.log(self.scale * (1 - y.pow(2)) + 1e-6).sum(-1)
        return action, logp


class ReplayBuffer:
    """A ring buffer of transitions, sampled with a numpy Generator."""

    def __init__(self, size: int, n_obs: int, n_act: int):
        self.obs = np.zeros((size, n_obs), np.float32)
        self.next_obs = np.zeros((size, n_obs), np.float32)
        self.actions = np.zeros((size, n_act), np.float32)
        self.rewards = np.zeros(size, np.float32)
        self.dones = np.zeros(size, np.float32)
        self.size, self.n, self.pos = int(size), 0, 0

    def add(self, obs, actions, rewards, next_obs, dones) -> None:
        for o, a, r, o2, d in zip(obs, actions, rewards, next_obs, dones):
            i = self.pos
            self.obs[i], self.actions[i], self.rewards[i] = o, a, r
            self.next_obs[i], self.dones[i] = o2, d
            self.pos = (self.pos + 1) % self.size
            self.n = min(self.n + 1, self.size)

    def sample(self, rng: np.random.Generator | torch.Generator, batch: int):
        """A batch of ``batch`` transitions drawn with replacement by ``rng`` (numpy or torch)."""
        if isinstance(rng, torch.Generator):
            idx = torch.randint(0, self.n, (batch,), generator=rng).numpy()
        else:
            idx = rng.integers(0, self.n, size=batch)
        return tuple(torch.as_tensor(a[idx]) for a in
                     (self.obs, self.actions, self.rewards, self.next_obs, self.dones))  # fmt: skip


class SACLearner:
    """One SAC learner (actor, twin critics, replay buffer, temperature) for a box action set.

    Args:
        n_obs: observation vector length.
        low, high: bounds of the action box (arrays of the action's shape; an int ``n_act``
            means the box ``[-1, 1]^n_act``).
        config: hyper-parameters.
        seed: initialises the networks, the replay sampling and the exploration noise.
    """

    supports_imitation = False

    def __init__(self, n_obs: int, low, high=None, config: SACConfig | None = None, seed: int = 0):
        if high is None:  # the registry's (n_obs, n_actions) form: the unit box
            low, high = -np.ones(int(low)), np.ones(int(low))
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self.n_obs, self.n_act = int(n_obs), int(self.low.size)
        self.config = c = config or SACConfig()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.actor = Actor(self.n_obs, self.n_act, c.hidden, self.low, self.high)
            self.q1, self.q2, self.q1_target, self.q2_target = (
                mlp(self.n_obs + self.n_act, 1, c.hidden) for _ in range(4)
            )
        self.q1_target.load_state_dict(self.q1.state_dict())
        self.q2_target.load_state_dict(self.q2.state_dict())
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=c.q_lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.policy_lr)
        self.target_entropy = -float(self.n_act)
        self.log_alpha = torch.tensor(float(np.log(c.alpha)), requires_grad=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=c.q_lr)
        self.buffer = ReplayBuffer(c.buffer_size, self.n_obs, self.n_act)
        self.rng = np.random.default_rng(int(seed))
        self.generator = torch.Generator().manual_seed(int(seed))
        self.n_updates_ = 0

    @property
    def alpha(self) -> float:
        return self.log_alpha.detach().exp().item() if self.config.autotune else self.config.alpha

    # ---- acting -------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs, mask=None, rng=None, deterministic: bool = False):
        """``(action, log-probability, 0.0)`` for one observation (``mask`` is unused: every
        value of the box is legal; the action set makes it valid on the grid). The
        exploration noise comes from ``rng`` when it is a ``torch.Generator`` (an episode's
        own, so that episodes played by workers are reproducible), else from the learner's."""
        x = torch.as_tensor(np.asarray(obs, np.float32)).unsqueeze(0)
        gen = rng if isinstance(rng, torch.Generator) else self.generator
        a, logp = self.actor.sample(x, gen, deterministic=deterministic)
        return a[0].numpy().astype(np.float32), float(logp[0]), 0.0

    # ---- learning -----------------------------------------------------------------------
    def record(self, obs, actions, rewards, next_obs, dones, **_) -> None:
        """Store transitions (arrays of equal length; ``dones``: 1 at a true terminal state,
        0 when an episode was only cut short)."""
        r = np.asarray(rewards, np.float32) * self.config.reward_scale
        self.buffer.add(obs, actions, r, next_obs, dones)

    def update(self, generator=None, lr_frac: float = 1.0) -> dict:
        """One gradient step of the critics (and, every ``policy_frequency`` steps, of the
        actor and the temperature); nothing before ``learning_starts`` transitions.

        ``generator`` (a ``torch.Generator``): draws the replay batch and the policy noise of
        this step (the trainer derives it from the seed and the update number, so a resumed
        run needs no RNG state); None: the learner's own generators."""
        c = self.config
        if self.buffer.n < max(c.learning_starts, c.batch_size):
            return {}
        gen = generator if isinstance(generator, torch.Generator) else self.generator
        obs, act, rew, nxt, done = self.buffer.sample(
            self.rng if gen is self.generator else gen, c.batch_size
        )
        with torch.no_grad():
            a2, logp2 = self.actor.sample(nxt, gen)
            x2 = torch.cat([nxt, a2], -1)
            q_next = torch.min(self.q1_target(x2), self.q2_target(x2)).squeeze(-1)
            target = rew + c.gamma * (1 - done) * (q_next - self.alpha * logp2)
        x = torch.cat([obs, act], -1)
        q_loss = F.mse_loss(self.q1(x).squeeze(-1), target) + F.mse_loss(
            self.q2(x).squeeze(-1), target
        )
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        stats = {"q_loss": q_loss.item()}
        if self.n_updates_ % c.policy_frequency == 0:
            for _ in range(c.policy_frequency):  # CleanRL: compensate the delayed updates
                a, logp = self.actor.sample(obs, gen)
                xa = torch.cat([obs, a], -1)
                q = torch.min(self.q1(xa), self.q2(xa)).squeeze(-1)
                actor_loss = (self.alpha * logp - q).mean()
                self.actor_opt.zero_grad()
                actor_loss.backward()
                self.actor_opt.step()
                if c.autotune:
                    alpha_loss = -(self.log_alpha.exp() * (logp.detach() + self.target_entropy))
                    self.alpha_opt.zero_grad()
                    alpha_loss.mean().backward()
                    self.alpha_opt.step()
            stats.update(actor_loss=actor_loss.item(), alpha=self.alpha)
        with torch.no_grad():
            for net, target_net in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for p, tp in zip(net.parameters(), target_net.parameters()):
                    tp.mul_(1 - c.tau).add_(c.tau * p)
        self.n_updates_ += 1
        return stats

    def behaviour_clone(self, *args, **kwargs) -> float:
        raise NotImplementedError("SAC has no imitation warm start")

    # ---- persistence --------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "q1": self.q1.state_dict(),
            "q2": self.q2.state_dict(),
            "q1_target": self.q1_target.state_dict(),
            "q2_target": self.q2_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "q_opt": self.q_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "n_updates": self.n_updates_,
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "q1", "q2", "q1_target", "q2_target"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        for name in ("q_opt", "actor_opt", "alpha_opt"):
            if name in state:
                getattr(self, name).load_state_dict(state[name])
        self.n_updates_ = int(state.get("n_updates", 0))

    def replay_state(self) -> dict:
        """The filled part of the replay buffer, in insertion order (a trainer's checkpoint
        keeps it so that a resumed run learns from the same transitions)."""
        b = self.buffer
        order = np.arange(b.pos - b.n, b.pos) % b.size
        return {k: getattr(b, k)[order].copy() for k in REPLAY_KEYS}

    def load_replay_state(self, state: dict) -> None:
        """Refill the replay buffer from `replay_state`."""
        b = self.buffer
        b.n = b.pos = 0
        b.add(*(state[k] for k in REPLAY_KEYS))

    def policy_state(self) -> dict:
        """The actor's weights: all that acting needs (what workers receive)."""
        return self.actor.state_dict()

    def load_policy_state(self, state: dict) -> None:
        self.actor.load_state_dict(state)


def train_gym(
    env_id: str = "Pendulum-v1",
    total_steps: int = 10_000,
    config: SACConfig | None = None,
    seed: int = 1,
) -> SACLearner:
    """Train a `SACLearner` on a gymnasium env with a box action space: uniform random
    actions for ``learning_starts`` steps, then the policy, one update per step."""
    import gymnasium as gym

    env = gym.make(env_id)
    space = env.action_space
    learner = SACLearner(env.observation_space.shape[0], space.low, space.high, config, seed=seed)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for step in range(total_steps):
        if step < learner.config.learning_starts:
            action = rng.uniform(space.low, space.high).astype(np.float32)
        else:
            action = learner.act(obs)[0]
        nxt, r, term, trunc, _ = env.step(action)
        learner.record([obs], [action], [r], [nxt], [float(term)])
        obs = nxt
        if term or trunc:
            obs, _ = env.reset()
        learner.update()
    env.close()
    return learner
