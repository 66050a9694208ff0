"""Simple Speaker Listener as numpy arrays: every sub-env advanced by one batched step, equal to mpe2.

    env = SpeakerListenerVecEnv(num_envs=512)            # continuous actions, 25-step episodes
    obs, infos = env.reset(seed=0)                       # obs["listener_0"]: (512, 11) float32
    obs, rewards, terminations, truncations, infos = env.step(actions)

What ``mpe2.simple_speaker_listener_v4`` computes for one env, with Python objects per entity and three
wrapper layers per agent per step, is here a handful of numpy operations on ``(num_envs, ...)`` arrays:

    listener:  pos += vel * dt;   vel = vel * (1 - damping) + u * dt     (dt 0.1, damping 0.25, mass 1)
               u = 5 * (a[2] - a[1], a[4] - a[3])  continuous,  5 * one of (0,0), (-1,0), (1,0), (0,-1), (0,1)  discrete
    speaker:   does not move; its message c = its action (continuous) or one_hot(action) (discrete)
    reward:    -|listener pos - goal landmark pos|^2, the same for both agents
    obs:       speaker  (3,):  colour of the goal landmark
               listener (11,): [vel (2), landmark pos - own pos (3 x 2), speaker's message (3)]
    episode:   truncated after ``max_cycles`` steps (it never terminates)

The arithmetic follows mpe2's operation by operation (float32 actions, float64 state, float32
observations), so transitions agree with mpe2's to float rounding; ``tests/test_speaker_listener_env.py``
checks 16 sub-envs over tens of thousands of random steps and hundreds of autoresets.

Seeding is mpe2's: ``reset(seed=s)`` makes sub-env ``i`` the env ``simple_speaker_listener_v4.parallel_env(
...).reset(seed=s + i)``; an unseeded ``reset()``, and every autoreset, continue each sub-env's own random
generator, as mpe2's next unseeded ``reset()`` would. A reset draws the goal and five positions per sub-env
from that sub-env's generator (a short Python loop over the sub-envs being reset, once per episode); the
step itself has no loop over sub-envs or agents.

Actions outside the Box are clipped to ``[0, 1]``, as mpe2's ``ClipOutOfBoundsWrapper`` does (mpe2 also
logs a warning; this env does not). NaN actions, discrete actions outside ``0..n-1``, wrong shapes and
missing or unknown agents raise a ``ValueError`` naming the agent. Everything else (absent-agent conventions,
same-step autoreset with ``final_observation``, batched infos, ``close``, ``with``) is the vector-env API
of ``marlkit.envs.vector`` (both agents are always present in this env).

Rendering delegates to mpe2: ``render()`` copies sub-env 0's state into an mpe2 env built with the same
``render_mode`` and returns its frame, so pictures look exactly like mpe2's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from marlkit.envs.vector import _PettingZooVecEnv
from marlkit.envs.worker import EnvSpec, InfoPayload

AGENTS = ("speaker_0", "listener_0")
NUM_LANDMARKS = 3
DIM_C = 3  # message size
DT = 0.1  # mpe2 World.dt
DAMPING = 0.25  # mpe2 World.damping
SENSITIVITY = 5.0  # mpe2 SimpleEnv._set_action: force per unit of action (agent.accel is None)
# mpe2's landmark colours; the speaker observes its goal landmark's colour.
LANDMARK_COLORS = np.array([[0.65, 0.15, 0.15], [0.15, 0.65, 0.15], [0.15, 0.15, 0.65]])
# Discrete listener actions 0..4: no-op, left, right, down, up (mpe2's order), as forces.
DISCRETE_FORCES = SENSITIVITY * np.array([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])


class SpeakerListenerVecEnv(_PettingZooVecEnv):
    """``num_envs`` Simple Speaker Listener envs stepped as one batch of numpy arrays (see the module doc).

    continuous_actions: Box(0, 1, (3,)) / Box(0, 1, (5,)) actions for speaker / listener if True, else
        Discrete(3) / Discrete(5), as in mpe2.
    max_cycles: episode length in steps (truncation).
    render_mode: None, "rgb_array" or "human" (drawn by mpe2, see ``render``).

    State, per sub-env: goal landmark index ``(N,)``, speaker and listener positions, listener velocity
    ``(N, 2)``, landmark positions ``(N, 3, 2)``, the speaker's message ``(N, 3)`` and the step count ``(N,)``.
    """

    def __init__(
        self,
        num_envs: int,
        continuous_actions: bool = True,
        max_cycles: int = 25,
        render_mode: str | None = None,
    ):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if not isinstance(max_cycles, (int, np.integer)) or max_cycles < 1:
            raise ValueError(f"max_cycles must be a positive int (episode length in steps), got {max_cycles!r}")
        metadata = {
            "render_modes": ["human", "rgb_array"],
            "is_parallelizable": True,
            "render_fps": 10,
            "name": "simple_speaker_listener_v4",
        }
        if render_mode is not None and render_mode not in metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {metadata['render_modes']}, got {render_mode!r}")
        self.continuous_actions = bool(continuous_actions)
        self.max_cycles = int(max_cycles)
        if self.continuous_actions:
            action_spaces = {
                "speaker_0": spaces.Box(low=0, high=1, shape=(DIM_C,)),
                "listener_0": spaces.Box(low=0, high=1, shape=(5,)),
            }
        else:
            action_spaces = {"speaker_0": spaces.Discrete(DIM_C), "listener_0": spaces.Discrete(5)}
        inf = np.float32(np.inf)
        observation_spaces = {
            agent: spaces.Box(low=-inf, high=inf, shape=(size,), dtype=np.float32)
            for agent, size in zip(AGENTS, (3, 11))
        }
        spec = EnvSpec(AGENTS, observation_spaces, action_spaces, metadata, render_mode)
        super().__init__(int(num_envs), spec, shared_memory=False)

        n = self.num_envs
        self._rngs: list[np.random.Generator | None] = [None] * n  # one generator per sub-env, as in mpe2
        self._goal = np.zeros(n, dtype=np.int64)
        self._speaker_pos = np.zeros((n, 2))  # drawn (mpe2's draw order) and rendered, never moves
        self._pos = np.zeros((n, 2))  # listener
        self._vel = np.zeros((n, 2))
        self._landmarks = np.zeros((n, NUM_LANDMARKS, 2))
        self._message = np.zeros((n, DIM_C))  # the speaker's state.c (float32 values, held exactly)
        self._steps = np.zeros(n, dtype=np.int64)
        self._cam_range = np.ones(n)  # mpe2's original_cam_range (rendering only)
        self._renderer: Any = None
        # Both agents act in every sub-env at every step, and both always have a final observation.
        self._buffers.active[:] = True
        self._buffers.final_mask[:] = True
        self._buffers.terminations[:] = 0.0  # Simple Speaker Listener has no terminal state

    # ----- the environment ------------------------------------------------------------------------------------
    def _reset(self, seeds: list[int | None], options: dict | None) -> list[InfoPayload]:
        # (mpe2 ignores reset options too.)
        for i, seed in enumerate(seeds):
            if seed is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(seed)[0]  # mpe2's SimpleEnv._seed
        self._reset_rows(np.arange(self.num_envs))
        self._write_observations()
        self._buffers.autoreset[:] = False
        return [None]

    def _reset_rows(self, rows: np.ndarray) -> None:
        """Start new episodes in sub-envs ``rows``, drawing from their generators in mpe2's order."""
        for i in rows.tolist():
            rng = self._rngs[i]
            # Scenario.reset_world: the goal landmark, then the positions of the speaker, the listener and
            # the three landmarks (one uniform(-1, 1, 2) each; one call for all five draws the same numbers).
            self._goal[i] = int(rng.integers(NUM_LANDMARKS))
            positions = rng.uniform(-1, +1, (2 + NUM_LANDMARKS, 2))
            self._speaker_pos[i] = positions[0]
            self._pos[i] = positions[1]
            self._landmarks[i] = positions[2:]
            self._cam_range[i] = np.max(np.abs(positions))
        self._vel[rows] = 0.0
        self._message[rows] = 0.0
        self._steps[rows] = 0

    def _step(self) -> list[InfoPayload]:
        b = self._buffers
        speaker_action = b.actions["speaker_0"]
        listener_action = b.actions["listener_0"]
        # 1. Actions -> listener force u (N, 2) and speaker message (N, 3), as mpe2's _set_action.
        if self.continuous_actions:
            # Clipping is what ClipOutOfBoundsWrapper does; the differences are taken in float32, as in mpe2.
            listener_action = np.clip(listener_action, 0.0, 1.0)
            force = np.empty_like(self._pos)
            force[:, 0] = listener_action[:, 2] - listener_action[:, 1]
            force[:, 1] = listener_action[:, 4] - listener_action[:, 3]
            force *= SENSITIVITY
            self._message[:] = np.clip(speaker_action, 0.0, 1.0)
        else:
            force = DISCRETE_FORCES[listener_action]
            self._message[:] = 0.0
            self._message[np.arange(self.num_envs), speaker_action] = 1.0
        # 2. Physics (World.integrate_state): position with the old velocity, then damped velocity plus force.
        self._pos += self._vel * DT
        self._vel *= 1 - DAMPING
        self._vel += force * DT
        self._steps += 1
        # 3. Reward: minus the squared distance from the listener to the goal landmark, for both agents.
        delta = self._pos - self._landmarks[np.arange(self.num_envs), self._goal]
        reward = -(np.square(delta[:, 0]) + np.square(delta[:, 1]))
        b.rewards[:] = reward  # (float32, one row per agent)
        truncated = self._steps >= self.max_cycles
        b.truncations[:] = truncated
        self._write_observations()
        # 4. Same-step autoreset of the sub-envs whose episode ended.
        b.autoreset[:] = truncated
        if truncated.any():
            for agent in self._agents:
                b.final_obs[agent][:] = b.obs[agent]  # (rows of sub-envs still running are masked out later)
            self._reset_rows(np.flatnonzero(truncated))
            self._write_observations()
        return [None]

    def _write_observations(self) -> None:
        obs = self._buffers.obs
        obs["speaker_0"][:] = LANDMARK_COLORS[self._goal]
        listener = obs["listener_0"]
        listener[:, 0:2] = self._vel
        listener[:, 2:8] = (self._landmarks - self._pos[:, None, :]).reshape(self.num_envs, 2 * NUM_LANDMARKS)
        listener[:, 8:11] = self._message

    # ----- input checks ---------------------------------------------------------------------------------------
    def _write_actions(self, actions: Any) -> None:
        super()._write_actions(actions)  # type, agent names, shapes
        for agent in self._agents:
            space = self._spec.action_spaces[agent]
            given = np.asarray(actions[agent])
            if given.dtype.kind in "fc" and np.isnan(given).any():
                rows = np.flatnonzero(np.isnan(given.reshape(self.num_envs, -1)).any(axis=1))
                raise ValueError(
                    f"actions[{agent!r}] holds NaN in sub-envs {rows.tolist()}; every agent acts in every "
                    f"sub-env of Simple Speaker Listener, so every row needs a valid action"
                )
            if isinstance(space, spaces.Discrete):
                target = self._buffers.actions[agent]
                bad = (target < 0) | (target >= space.n)
                if bad.any():
                    rows = np.flatnonzero(bad)
                    raise ValueError(
                        f"actions[{agent!r}] has {target[rows].tolist()} in sub-envs {rows.tolist()}; "
                        f"expected integers in 0..{space.n - 1} (action space {space})"
                    )

    # ----- rendering and lifetime -------------------------------------------------------------------------------
    def _render(self) -> Any:
        """mpe2 draws sub-env 0: its state is copied into an mpe2 env that is never stepped."""
        if self.render_mode is None:
            raise ValueError("render() needs a render_mode: SpeakerListenerVecEnv(..., render_mode='rgb_array')")
        if self._renderer is None:
            from mpe2 import simple_speaker_listener_v4

            self._renderer = simple_speaker_listener_v4.raw_env(
                continuous_actions=self.continuous_actions, max_cycles=self.max_cycles, render_mode=self.render_mode
            )
            self._renderer.reset(seed=0)  # sets colours and state arrays; overwritten below
        world = self._renderer.world
        speaker, listener = world.agents
        speaker.goal_b = world.landmarks[int(self._goal[0])]
        listener.color = speaker.goal_b.color + np.array([0.45, 0.45, 0.45])  # as Scenario.reset_world
        speaker.state.p_pos = self._speaker_pos[0].copy()
        listener.state.p_pos = self._pos[0].copy()
        listener.state.p_vel = self._vel[0].copy()
        speaker.state.c = self._message[0].copy()
        for landmark, position in zip(world.landmarks, self._landmarks[0]):
            landmark.state.p_pos = position.copy()
        self._renderer.original_cam_range = float(self._cam_range[0])
        return self._renderer.render()

    def close(self) -> None:
        """Release the renderer, if any; calling it again does nothing."""
        if not self.closed:
            self.closed = True
            if self._renderer is not None:
                self._renderer.close()
                self._renderer = None

    def __repr__(self) -> str:
        kind = "continuous" if self.continuous_actions else "discrete"
        return f"{type(self).__name__}(num_envs={self.num_envs}, {kind} actions, max_cycles={self.max_cycles})"
