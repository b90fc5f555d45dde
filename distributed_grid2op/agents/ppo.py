"""PPO with invalid-action masking, CleanRL-style: one readable file, all knobs in `PPOConfig`.

One `PPOLearner` owns one actor-critic network, one rollout buffer and one optimiser: the
hierarchical agent makes one per cluster (independent learners). It implements the learner
protocol of `distributed_grid2op.agents.learners` (registered there as ``"ppo"``).
Trajectories are recorded whole (`record`), so they may come from other processes (arrays
in, arrays out) and be of any length, which suits the grid where a cluster decides only at
some steps of an episode.

`train_gym` runs the same learner on a gymnasium env; the CartPole test proves it learns
(scored with `learners.evaluate_gym`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class PPOConfig:
    """Every PPO hyper-parameter in one place (defaults: the grid cluster learners).

    Reward shaping is only ``reward_scale`` (rewards are multiplied by it before GAE; the grid
    reward is a sum of per-step ``CloseToOverflowReward`` over the steps between two decisions
    of a cluster, hundreds at most, so 0.01 keeps returns of order 1).
    """

    hidden: tuple[int, ...] = (128, 128)
    learning_rate: float = 3e-4
    anneal_lr: bool = False  # linear decay to 0 over `total_updates` (set by the caller)
    gamma: float = 0.99  # per decision of this learner
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    update_epochs: int = 4
    minibatch_size: int = 64
    norm_adv: bool = True
    target_kl: float | None = 0.05  # stop the epochs early when the policy moved this much
    reward_scale: float = 0.01
    # behaviour cloning (imitation warm start, optional)
    bc_epochs: int = 30
    bc_learning_rate: float = 1e-3
    bc_minibatch_size: int = 64
    bc_temperature: float = 0.0  # > 0: soft labels from the expert's simulated max rho (0.02)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PPOConfig:
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", cls.hidden))
        return cls(**d)


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal init (CleanRL): std sqrt(2) hidden, 0.01 policy head, 1 value head."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class ActorCritic(nn.Module):
    """Separate tanh MLPs for policy logits (n_actions) and state value (1)."""

    def __init__(self, n_obs: int, n_actions: int, hidden: tuple[int, ...] = (64, 64)):
        super().__init__()

        def mlp(out: int, std: float) -> nn.Sequential:
            layers, width = [], n_obs
            for h in hidden:
                layers += [layer_init(nn.Linear(width, h)), nn.Tanh()]
                width = h
            return nn.Sequential(*layers, layer_init(nn.Linear(width, out), std=std))

        self.actor = mlp(n_actions, 0.01)
        self.critic = mlp(1, 1.0)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def dist(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        logits = self.actor(x)
        if mask is not None:
            logits = logits.masked_fill(~mask, -1e8)
        return torch.distributions.Categorical(logits=logits)


@dataclass
class RolloutBuffer:
    """Flat arrays of finished trajectories with their GAE advantages and returns."""

    obs: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    logps: list = field(default_factory=list)
    values: list = field(default_factory=list)
    advantages: list = field(default_factory=list)
    returns: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(sum(len(a) for a in self.actions))

    def clear(self) -> None:
        for v in self.__dict__.values():
            v.clear()


def gae(
    rewards, values, last_value: float, gamma: float, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation on one trajectory; ``last_value`` = 0 if terminal."""
    n = len(rewards)
    adv = np.zeros(n, dtype=np.float32)
    last = 0.0
    for t in reversed(range(n)):
        next_v = last_value if t == n - 1 else values[t + 1]
        delta = rewards[t] + gamma * next_v - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv, adv + np.asarray(values, dtype=np.float32)


class PPOLearner:
    """One independent PPO learner (network, buffer, optimiser) for a discrete masked policy.

    Args:
        n_obs: observation vector length.
        n_actions: size of the discrete action set.
        config: hyper-parameters.
        seed: initialises the network weights (a private torch Generator: no global state).
    """

    supports_imitation = True

    def __init__(self, n_obs: int, n_actions: int, config: PPOConfig | None = None, seed: int = 0):
        self.n_obs, self.n_actions = int(n_obs), int(n_actions)
        self.config = config or PPOConfig()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.net = ActorCritic(self.n_obs, self.n_actions, self.config.hidden)
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=self.config.learning_rate, eps=1e-5
        )
        self.buffer = RolloutBuffer()
        self.n_updates_ = 0

    # ---- acting -------------------------------------------------------------------------
    @torch.no_grad()
    def act(
        self,
        obs: np.ndarray,
        mask: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
        deterministic: bool = False,
    ) -> tuple[int, float, float]:
        """Action, its log-probability and the state value for one observation.

        Sampling uses ``rng`` (a numpy Generator) so that episodes replay exactly in any process.
        """
        x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        m = None if mask is None else torch.as_tensor(mask, dtype=torch.bool).unsqueeze(0)
        dist = self.net.dist(x, m)
        probs = dist.probs[0].numpy().astype(np.float64)
        if deterministic or rng is None:
            a = int(np.argmax(probs))
        else:
            a = int(
                min(np.searchsorted(np.cumsum(probs), rng.random() * probs.sum()), len(probs) - 1)
            )
            if mask is not None and not mask[a]:  # float round-off at a masked boundary
                a = int(np.argmax(probs))
        return a, float(dist.log_prob(torch.tensor([a]))[0]), float(self.net.value(x)[0])

    @torch.no_grad()
    def probabilities(self, obs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Masked action probabilities for one observation, shape (n_actions,)."""
        x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        m = None if mask is None else torch.as_tensor(mask, dtype=torch.bool).unsqueeze(0)
        return self.net.dist(x, m).probs[0].numpy()

    # ---- learning -----------------------------------------------------------------------
    def record(self, obs, masks, actions, logps, values, rewards, last_value: float = 0.0) -> None:
        """Store one trajectory (arrays of equal length) and compute its advantages."""
        if len(actions) == 0:
            return
        c = self.config
        r = np.asarray(rewards, dtype=np.float32) * c.reward_scale
        adv, ret = gae(r, np.asarray(values, dtype=np.float32), last_value, c.gamma, c.gae_lambda)
        b = self.buffer
        b.obs.append(np.asarray(obs, dtype=np.float32))
        b.masks.append(np.asarray(masks, dtype=bool))
        b.actions.append(np.asarray(actions, dtype=np.int64))
        b.logps.append(np.asarray(logps, dtype=np.float32))
        b.values.append(np.asarray(values, dtype=np.float32))
        b.advantages.append(adv)
        b.returns.append(ret)

    def update(self, generator: torch.Generator, lr_frac: float = 1.0) -> dict:
        """PPO-clip epochs over the buffer, then clear it; returns loss statistics."""
        c, b = self.config, self.buffer
        if len(b) == 0:
            return {}
        for g in self.optimizer.param_groups:
            g["lr"] = c.learning_rate * (lr_frac if c.anneal_lr else 1.0)
        obs, masks = (
            torch.as_tensor(np.concatenate(b.obs)),
            torch.as_tensor(np.concatenate(b.masks)),
        )
        actions, old_logp = (
            torch.as_tensor(np.concatenate(b.actions)),
            torch.as_tensor(np.concatenate(b.logps)),
        )
        old_v = torch.as_tensor(np.concatenate(b.values))
        advs, rets = (
            torch.as_tensor(np.concatenate(b.advantages)),
            torch.as_tensor(np.concatenate(b.returns)),
        )
        n = len(actions)
        stats = {"pg_loss": 0.0, "v_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "samples": n}
        for _ in range(c.update_epochs):
            perm = torch.randperm(n, generator=generator)
            for start in range(0, n, c.minibatch_size):
                idx = perm[start : start + c.minibatch_size]
                dist = self.net.dist(obs[idx], masks[idx])
                logp = dist.log_prob(actions[idx])
                ratio = (logp - old_logp[idx]).exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - (logp - old_logp[idx])).mean()
                mb_adv = advs[idx]
                if c.norm_adv and len(idx) > 1:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(
                    -mb_adv * ratio, -mb_adv * ratio.clamp(1 - c.clip_coef, 1 + c.clip_coef)
                ).mean()
                v = self.net.value(obs[idx])
                if c.clip_vloss:
                    v_clip = old_v[idx] + (v - old_v[idx]).clamp(-c.clip_coef, c.clip_coef)
                    v_loss = 0.5 * torch.max((v - rets[idx]) ** 2, (v_clip - rets[idx]) ** 2).mean()
                else:
                    v_loss = 0.5 * ((v - rets[idx]) ** 2).mean()
                entropy = dist.entropy().mean()
                loss = pg_loss - c.ent_coef * entropy + c.vf_coef * v_loss
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), c.max_grad_norm)
                self.optimizer.step()
                stats.update(
                    pg_loss=pg_loss.item(),
                    v_loss=v_loss.item(),
                    entropy=entropy.item(),
                    approx_kl=approx_kl.item(),
                )
            if c.target_kl is not None and stats["approx_kl"] > c.target_kl:
                break
        b.clear()
        self.n_updates_ += 1
        return stats

    def behaviour_clone(
        self,
        obs: np.ndarray,
        masks: np.ndarray,
        actions: np.ndarray,
        generator: torch.Generator,
        targets: np.ndarray | None = None,
    ) -> float:
        """Imitation warm start: cross-entropy of the masked policy on expert actions
        (``actions``, (N,)), or on soft ``targets`` ((N, n_actions) probabilities) if given.

        Returns the final training accuracy on ``actions``. The critic is left to PPO.
        """
        c = self.config
        if len(actions) == 0:
            return float("nan")
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        m = torch.as_tensor(np.asarray(masks, dtype=bool))
        y = torch.as_tensor(np.asarray(actions, dtype=np.int64))
        p = None if targets is None else torch.as_tensor(np.asarray(targets, dtype=np.float32))
        opt = torch.optim.Adam(self.net.actor.parameters(), lr=c.bc_learning_rate)
        for _ in range(c.bc_epochs):
            perm = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), c.bc_minibatch_size):
                idx = perm[start : start + c.bc_minibatch_size]
                dist = self.net.dist(x[idx], m[idx])
                if p is None:
                    loss = -dist.log_prob(y[idx]).mean()
                else:  # masked logits are -1e8, not -inf: p * log p stays finite
                    loss = -(p[idx] * dist.logits).sum(-1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            pred = self.net.dist(x, m).probs.argmax(-1)
        return float((pred == y).float().mean())

    # ---- persistence --------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "n_updates": self.n_updates_,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        self.n_updates_ = int(state.get("n_updates", 0))

    def policy_state(self) -> dict:
        """The network weights: all that acting needs (what workers receive)."""
        return self.net.state_dict()

    def load_policy_state(self, state: dict) -> None:
        self.net.load_state_dict(state)


def train_gym(
    env_id: str = "CartPole-v1",
    total_steps: int = 100_000,
    rollout_steps: int = 1024,
    config: PPOConfig | None = None,
    seed: int = 1,
) -> PPOLearner:
    """Train a `PPOLearner` on a gymnasium env with a discrete action space (no masking).

    Rollouts of ``rollout_steps`` env steps; a trajectory cut by the rollout end or by a
    time-limit truncation is bootstrapped with the critic's value.
    """
    import gymnasium as gym

    env = gym.make(env_id)
    learner = PPOLearner(env.observation_space.shape[0], env.action_space.n, config, seed=seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    n_updates = max(1, total_steps // rollout_steps)
    for u in range(n_updates):
        traj = {k: [] for k in ("obs", "masks", "actions", "logps", "values", "rewards")}
        ones = np.ones(env.action_space.n, dtype=bool)
        for t in range(rollout_steps):
            a, logp, v = learner.act(obs, rng=rng)
            nxt, r, term, trunc, _ = env.step(a)
            for k, val in zip(traj, (obs, ones, a, logp, v, r)):
                traj[k].append(val)
            obs = nxt
            if term or trunc or t == rollout_steps - 1:
                last = 0.0 if term else learner.act(nxt)[2]
                learner.record(**traj, last_value=last)
                traj = {k: [] for k in traj}
                if term or trunc:
                    obs, _ = env.reset()
        learner.update(gen, lr_frac=1.0 - u / n_updates)
    env.close()
    return learner
