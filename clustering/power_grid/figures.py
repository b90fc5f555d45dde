"""The grid drawn with grid2op's `PlotMatplot`, substations, lines (and generators and storage
units) coloured by cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _palette(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]


def plot_grid_clusters(env, sub_cluster, line_cluster, path, title: str = "clusters",
                       gen_cluster=None, storage_cluster=None, decided=None) -> Path:  # fmt: skip
    """Write the grid layout with substation ``s`` filled with the colour of ``sub_cluster[s]``
    and line ``l`` drawn in the colour of ``line_cluster[l]``; substations that the data
    decided (``decided``; default: the controllable ones) get a thick black outline. With
    ``gen_cluster`` and ``storage_cluster`` (format 2), every generator (triangle) and storage
    unit (square) is drawn in the colour of its cluster, with its id, and linked to its
    substation."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from grid2op.PlotGrid import PlotMatplot
    from matplotlib import patches
    from matplotlib.lines import Line2D

    from clustering.plots import _save

    sub_cluster = np.asarray(sub_cluster, dtype=int)
    line_cluster = np.asarray(line_cluster, dtype=int)
    units = gen_cluster is not None
    gen_cluster = np.asarray(gen_cluster if units else [], dtype=int)
    storage_cluster = np.asarray(storage_cluster if storage_cluster is not None else [], dtype=int)
    n_clusters = (
        int(
            max(
                sub_cluster.max(initial=0),
                line_cluster.max(initial=0),
                gen_cluster.max(initial=0),
                storage_cluster.max(initial=0),
            )
        )
        + 1
    )
    colors = _palette(n_clusters)
    from distributed_grid2op.grid import controllable_substations

    decided = set(controllable_substations(env) if decided is None else decided)

    class _ClusterPlot(PlotMatplot):
        def draw_substation(self, figure, observation, sub_id, sub_name, pos_x, pos_y):
            r = self.settings.sub.radius
            self.xlim[0] = min(self.xlim[0], pos_x - r)
            self.xlim[1] = max(self.xlim[1], pos_x + r)
            self.ylim[0] = min(self.ylim[0], pos_y - r)
            self.ylim[1] = max(self.ylim[1], pos_y + r)
            self.ax.add_patch(
                patches.Circle(
                    (pos_x, pos_y),
                    radius=r * 1.4,
                    facecolor=colors[sub_cluster[sub_id]],
                    edgecolor="black",
                    linewidth=2.5 if sub_id in decided else 0.8,
                    zorder=3,
                )
            )
            self.ax.text(pos_x, pos_y, str(sub_id), ha="center", va="center", zorder=4, fontsize=8)

        def draw_powerline(
            self,
            figure,
            observation,
            line_id,
            line_name,
            connected,
            line_value,
            line_unit,
            or_bus,
            pos_or_x,
            pos_or_y,
            ex_bus,
            pos_ex_x,
            pos_ex_y,
        ):
            color = colors[line_cluster[line_id]]
            self.ax.plot([pos_or_x, pos_ex_x], [pos_or_y, pos_ex_y], color=color, lw=3, zorder=1)
            self.ax.text(
                (pos_or_x + pos_ex_x) / 2,
                (pos_or_y + pos_ex_y) / 2,
                str(line_id),
                fontsize=6,
                color="dimgray",
                ha="center",
                va="center",
                zorder=2,
            )

        def _unit(self, marker, color, label, pos_x, pos_y, sub_x, sub_y):
            self.xlim[0] = min(self.xlim[0], pos_x - 10)
            self.xlim[1] = max(self.xlim[1], pos_x + 10)
            self.ylim[0] = min(self.ylim[0], pos_y - 10)
            self.ylim[1] = max(self.ylim[1], pos_y + 10)
            self.ax.plot([sub_x, pos_x], [sub_y, pos_y], color="gray", lw=0.8, zorder=0)
            self.ax.scatter([pos_x], [pos_y], marker=marker, s=110, color=color,
                            edgecolors="black", linewidths=0.8, zorder=3)  # fmt: skip
            self.ax.text(pos_x, pos_y - 14, label, fontsize=6, ha="center", va="top", zorder=4)

        def draw_gen(self, figure, observation, gen_id, gen_name, gen_bus, gen_value, gen_unit,
                     pos_x, pos_y, sub_x, sub_y):  # fmt: skip
            if units:
                self._unit("^", colors[gen_cluster[gen_id]], f"g{gen_id}", pos_x, pos_y,
                           sub_x, sub_y)  # fmt: skip

        def draw_storage(self, figure, observation, storage_id, storage_name, storage_bus,
                         storage_value, storage_unit, pos_x, pos_y, sub_x, sub_y):  # fmt: skip
            if units and storage_cluster.size:
                self._unit("s", colors[storage_cluster[storage_id]], f"st{storage_id}", pos_x,
                           pos_y, sub_x, sub_y)  # fmt: skip

        if not units:  # the substation and line drawing of format 1 runs, unchanged
            draw_gen = PlotMatplot.draw_gen
            draw_storage = PlotMatplot.draw_storage

    helper = _ClusterPlot(env.observation_space, width=900, height=600, load_radius=4, gen_radius=4)
    fig = helper.plot_info(observation=None, gen_values=np.zeros(env.n_gen))
    ax = fig.axes[0]
    handles = [
        Line2D([0], [0], color=colors[c], lw=4, label=f"cluster {c}") for c in range(n_clusters)
    ]
    if units:
        handles += [
            Line2D([0], [0], marker="^", ls="", color="gray", label="generator"),
            Line2D([0], [0], marker="s", ls="", color="gray", label="storage unit"),
        ]
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    ax.set_title(title)
    out = _save(fig, path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out
