"""The grid drawn with grid2op's `PlotMatplot`, substations and lines coloured by cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _palette(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]


def plot_grid_clusters(env, sub_cluster, line_cluster, path, title: str = "clusters") -> Path:
    """Write the grid layout with substation ``s`` filled with the colour of ``sub_cluster[s]``
    and line ``l`` drawn in the colour of ``line_cluster[l]``; substations that the data
    decided (controllable ones) get a thick black outline."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from grid2op.PlotGrid import PlotMatplot
    from matplotlib import patches
    from matplotlib.lines import Line2D

    from clustering.plots import _save

    sub_cluster = np.asarray(sub_cluster, dtype=int)
    line_cluster = np.asarray(line_cluster, dtype=int)
    n_clusters = int(max(sub_cluster.max(initial=0), line_cluster.max(initial=0))) + 1
    colors = _palette(n_clusters)
    from distributed_grid2op.grid import controllable_substations

    decided = set(controllable_substations(env))

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

    helper = _ClusterPlot(env.observation_space, width=900, height=600, load_radius=4, gen_radius=4)
    fig = helper.plot_info(observation=None, gen_values=np.zeros(env.n_gen))
    ax = fig.axes[0]
    handles = [
        Line2D([0], [0], color=colors[c], lw=4, label=f"cluster {c}") for c in range(n_clusters)
    ]
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    ax.set_title(title)
    out = _save(fig, path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out
