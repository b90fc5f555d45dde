"""A stochastic model of grid injections: hourly profile + fitted marginals + Gaussian copula.

Every injection column ``v`` (load_p, load_q, prod_p; MW / MVAr) is modelled as

    x_v(t) = profile_v(t) + F_{v,h(t)}^{-1}(Phi(z_v(t)))

* ``profile_v(t)``: the hourly mean (interpolated between hour centres so it is smooth),
  times a weekday and a month factor when the source covers every weekday / month;
* ``F_{v,h}``: the distribution of the residual in hour ``h``, the best of several
  ``scipy.stats`` location-scale families by AIC (all have 2 parameters);
* ``z(t)``: a latent stationary Gaussian vector, the sum of a slow and a fast AR(1)
  (``sqrt(w) zs + sqrt(1 - w) zf``, ``z_t = phi * z_{t-1} + e_t``; phis and w per column
  fitted to the latent autocorrelation at lags 5 min ... 16 h: temporal correlation), with
  correlation ``R`` across columns (loads and renewables: a Gaussian copula).

Samples are clipped to the range observed in their hour of day (or over all hours) and set
to zero in hours where the source is always zero (solar at night). Dispatchable generators are then rescaled so that total
generation = total load x (1 + the source's loss ratio) - renewables: power flows converge
and the slack bus only covers the losses, as in the source.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from scipy import stats

from distributed_grid2op.errors import UserError
from distributed_grid2op.scenarios.data import KINDS, SourceData

FAMILIES = ("norm", "laplace", "logistic", "gumbel_r", "gumbel_l")
_EULER = 0.5772156649015329


def _fit_family(name: str, r: np.ndarray) -> tuple[float, float]:
    """Closed-form estimates: MLE for norm and laplace, moments for logistic and Gumbel."""
    mean, std = float(r.mean()), float(r.std())
    if name == "norm":
        return mean, std
    if name == "laplace":
        med = float(np.median(r))
        return med, max(float(np.abs(r - med).mean()), 1e-12)
    if name == "logistic":
        return mean, std * np.sqrt(3.0) / np.pi
    scale = std * np.sqrt(6.0) / np.pi
    if name == "gumbel_r":
        return mean - _EULER * scale, scale
    if name == "gumbel_l":
        return mean + _EULER * scale, scale
    raise UserError(f"unknown family {name!r}; choose among {', '.join(FAMILIES)}")


def _calendar(times: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(fractional hour, hour, weekday, month-1) arrays for timestamps."""
    hour = np.asarray(times.hour)
    frac = hour + np.asarray(times.minute) / 60.0
    return frac, hour, np.asarray(times.weekday), np.asarray(times.month) - 1


def _nearest_correlation(matrix: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """Clip eigenvalues to ``floor`` and rescale to a unit diagonal (a valid correlation)."""
    w, u = np.linalg.eigh((matrix + matrix.T) / 2)
    fixed = (u * np.maximum(w, floor)) @ u.T
    d = np.sqrt(np.diag(fixed))
    return fixed / np.outer(d, d)


def _psd(matrix: np.ndarray, floor: float = 1e-9) -> np.ndarray:
    w, u = np.linalg.eigh((matrix + matrix.T) / 2)
    return (u * np.maximum(w, floor)) @ u.T


#: a source forecast further than this share of a column's range outside the range of its
#: actual values is a corrupt row, not a forecast error (l2rpn_idf_2023's nuclear units: 360 MW
#: at most, forecast at up to 2358 MW in ~1% of the rows), left out of the error estimate
FORECAST_OUTLIER_MARGIN = 0.1


def _forecast_errors(pairs, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Forecast minus actual, stacked over ``pairs`` of (forecast rows, actual rows); NaN where
    the forecast lies outside ``[lo, hi]`` widened by `FORECAST_OUTLIER_MARGIN` of the range
    (a forecast no actual value comes near). Shape (rows, columns)."""
    err = np.vstack([f - a for f, a in pairs])
    f = np.vstack([f for f, _ in pairs])
    margin = FORECAST_OUTLIER_MARGIN * (hi - lo)
    return np.where((f < lo - margin) | (f > hi + margin), np.nan, err)


def _nanstd(err: np.ndarray) -> np.ndarray:
    """Per-column std of ``err`` ignoring NaN (0 for a column with no usable row; exactly
    ``err.std(0)`` when nothing is NaN)."""
    bad = np.isnan(err)
    if not bad.any():
        return err.std(0)
    out = np.zeros(err.shape[1])
    for j in np.flatnonzero(~bad.all(0)):
        out[j] = err[~bad[:, j], j].std()
    return out


def _mean_square(err: np.ndarray) -> float:
    """Mean of the squared errors that are not NaN."""
    return (
        float(np.mean(err[~np.isnan(err)] ** 2)) if np.isnan(err).any() else float(np.mean(err**2))
    )


class InjectionModel:
    """Fit on a `SourceData`, then ``sample(n_steps, rng)`` new chronics (dict of arrays).

    Args:
        families: ``scipy.stats`` location-scale families tried per (column, hour).
        n_quantiles: points of the tabulated inverse CDF (sampling interpolates in it).
        z_max: latent values are clipped to +-z_max (u in [Phi(-z_max), Phi(z_max)]).
        weekday, month: ``"auto"`` uses a weekday / month factor only when the source covers
            all 7 weekdays / 12 months; ``True`` / ``False`` force it.
        clip: ``"hour"`` clips each sample to the range observed in its hour of day (a few
            days of source data cannot vouch for values beyond it), ``"global"`` to the range
            observed over all hours.
        ramp_limits: keep each dispatchable generator's schedule within its ramps
            (``gen_max_ramp_up`` / ``gen_max_ramp_down`` per step, when the env has them):
            grid2op does not check a chronic's own ramps, but once an agent redispatches,
            curtails or uses storage it computes every step's dispatch within them, and a
            schedule that moves faster ends the episode (``ImpossibleRedispatching``). The
            source chronics respect them; the rescaled dispatch of generated ones did not
            (measured: 29% of generator-steps of 12 generated l2rpn_idf_2023 scenarios, up to
            204 MW over in a step; 0.03% and 0.5 MW on l2rpn_case14_sandbox). False: the
            schedules of scenarios made before (reproduces those sets).
    """

    def __init__(
        self,
        families=FAMILIES,
        n_quantiles: int = 161,
        z_max: float = 4.0,
        weekday="auto",
        month="auto",
        clip: str = "hour",
        ramp_limits: bool = True,
    ):
        self.families = tuple(families)
        self.clip = clip
        self.ramp_limits = ramp_limits
        self.n_quantiles = n_quantiles
        self.z_max = z_max
        self.weekday = weekday
        self.month = month

    # ------------------------------------------------------------------ fit
    def fit(self, source: SourceData) -> InjectionModel:
        """Estimate profiles, marginals, AR coefficients, copula and forecast errors."""
        for name in self.families:
            _fit_family(name, np.zeros(2) + [0.0, 1.0])  # validates names early
        nl, ng = len(source.load_names), len(source.gen_names)
        self.load_names_, self.gen_names_ = list(source.load_names), list(source.gen_names)
        self.slices_ = {
            "load_p": slice(0, nl),
            "load_q": slice(nl, 2 * nl),
            "prod_p": slice(2 * nl, 2 * nl + ng),
        }
        chronics = [
            np.hstack([source.arrays[k][c] for k in ("load_p", "load_q", "prod_p")])
            for c in range(len(source.chronic_names))
        ]
        x = np.vstack(chronics)
        v = x.shape[1]
        cal = [_calendar(source.times(c)) for c in range(len(chronics))]
        frac, hour, wday, mon = (np.concatenate([c[i] for c in cal]) for i in range(4))
        self.interval_ = source.interval
        self.starts_ = list(source.starts)
        self.use_weekday_ = (
            len(set(wday.tolist())) == 7 if self.weekday == "auto" else bool(self.weekday)
        )
        self.use_month_ = len(set(mon.tolist())) == 12 if self.month == "auto" else bool(self.month)

        # calendar profile: weekday/month factors, then hourly means of the deseasonalised data
        mean_all = x.mean(0)
        safe = np.where(np.abs(mean_all) > 1e-9, mean_all, 1.0)
        self.weekday_factor_ = np.ones((7, v))
        self.month_factor_ = np.ones((12, v))
        if self.use_weekday_:
            for d in range(7):
                if np.any(wday == d):
                    self.weekday_factor_[d] = np.where(
                        np.abs(mean_all) > 1e-9, x[wday == d].mean(0) / safe, 1.0
                    )
        if self.use_month_:
            for m in range(12):
                if np.any(mon == m):
                    self.month_factor_[m] = np.where(
                        np.abs(mean_all) > 1e-9, x[mon == m].mean(0) / safe, 1.0
                    )
        base = x / (self.weekday_factor_[wday] * self.month_factor_[mon])
        self.hourly_mean_ = np.tile(mean_all, (24, 1))
        for h in range(24):
            if np.any(hour == h):
                self.hourly_mean_[h] = base[hour == h].mean(0)
        resid = x - self._profile(frac, wday, mon)

        # per (hour, column) marginal: best family by AIC, tabulated inverse CDF
        if self.clip not in ("hour", "global"):
            raise UserError(f"clip must be 'hour' or 'global', got {self.clip!r}")
        self.lo_, self.hi_ = x.min(0), x.max(0)
        self.lo_hour_, self.hi_hour_ = np.tile(self.lo_, (24, 1)), np.tile(self.hi_, (24, 1))
        if self.clip == "hour":
            for h in range(24):
                if np.any(hour == h):
                    self.lo_hour_[h], self.hi_hour_[h] = x[hour == h].min(0), x[hour == h].max(0)
        self.zero_hour_ = np.zeros((24, v), dtype=bool)
        self.family_ = np.full((24, v), "constant", dtype=object)
        self.params_ = np.zeros((24, v, 2))
        zs = np.linspace(-self.z_max, self.z_max, self.n_quantiles)
        us = stats.norm.cdf(zs)
        self.quantiles_ = np.zeros((v, 24, self.n_quantiles))
        z = np.zeros_like(x)
        active = np.zeros_like(x, dtype=bool)
        u_lo, u_hi = stats.norm.cdf(-self.z_max), stats.norm.cdf(self.z_max)
        for h in range(24):
            rows = hour == h
            if not rows.any():
                continue
            for j in range(v):
                r = resid[rows, j]
                self.zero_hour_[h, j] = bool(np.all(np.abs(x[rows, j]) < 1e-9))
                if self.zero_hour_[h, j] or r.std() < 1e-9:
                    self.params_[h, j] = (float(r.mean()), 0.0)
                    self.quantiles_[j, h] = float(r.mean())
                    continue
                best, best_aic = None, np.inf
                for name in self.families:
                    loc, scale = _fit_family(name, r)
                    aic = 4.0 - 2.0 * float(getattr(stats, name).logpdf(r, loc, scale).sum())
                    if aic < best_aic:
                        best, best_aic, params = name, aic, (loc, scale)
                dist = getattr(stats, best)
                self.family_[h, j], self.params_[h, j] = best, params
                self.quantiles_[j, h] = dist.ppf(us, *params)
                z[rows, j] = stats.norm.ppf(np.clip(dist.cdf(r, *params), u_lo, u_hi))
                active[rows, j] = True

        # temporal correlation: latent z = sqrt(w) * slow AR(1) + sqrt(1 - w) * fast AR(1) per
        # column, fitted to the latent autocorrelation function (a single AR(1) fitted at lag 1
        # mistakes measurement noise for fast mean reversion: excursions become too frequent)
        lengths = [len(c) for c in chronics]
        lags = [k for k in (1, 2, 3, 6, 12, 24, 48, 96, 192) if k < max(2, min(lengths) // 2)] or [
            1
        ]
        acf = np.stack([self._latent_acf(z, active, lengths, k) for k in lags])  # (n_lags, v)
        self.lags_ = lags
        self.phi_slow_, self.phi_fast_, self.weight_ = self._fit_two_ar(
            acf, np.asarray(lags, dtype=float)
        )
        # cross correlation (Gaussian copula) of the latent z, over rows where both are active
        a = z * active
        m = active.astype(float)
        cross = a.T @ a
        energy = (a**2).T @ m  # energy[i, j] = sum z_i^2 over rows where i and j are active
        norm = np.sqrt(energy * energy.T)
        corr = np.where(norm > 0, cross / np.where(norm > 0, norm, 1.0), 0.0)
        np.fill_diagonal(corr, 1.0)
        self.corr_ = _nearest_correlation(corr)
        self.chol_corr_ = np.linalg.cholesky(self.corr_)
        self.chol_innov_ = []
        for phi in (self.phi_slow_, self.phi_fast_):
            innov = _psd(self.corr_ * (1.0 - np.outer(phi, phi)))
            self.chol_innov_.append(np.linalg.cholesky(innov + 1e-12 * np.eye(v)))

        # generation consistent with load
        load_p = x[:, self.slices_["load_p"]].sum(1)
        prod_p = x[:, self.slices_["prod_p"]].sum(1)
        self.loss_ratio_ = float(np.mean((prod_p - load_p) / np.maximum(load_p, 1e-9)))
        self.dispatchable_ = np.asarray(source.gen_dispatchable, dtype=bool)
        self.gen_pmax_ = np.asarray(source.gen_pmax, dtype=float)
        ramps = (source.gen_ramp_up, source.gen_ramp_down)
        self.gen_ramps_ = (
            None if ramps[0] is None else tuple(np.asarray(r, dtype=float) for r in ramps)
        )
        disp = x[:, self.slices_["prod_p"]][:, self.dispatchable_]
        tot = disp.sum(0)
        self.dispatch_share_ = (
            tot / tot.sum() if tot.sum() > 0 else np.full(len(tot), 1.0 / max(len(tot), 1))
        )

        # voltages kept from the source (hourly median setpoint per generator, kV)
        pv = np.vstack(source.arrays["prod_v"])
        self.prod_v_hourly_ = np.tile(np.median(pv, 0), (24, 1))
        for h in range(24):
            if np.any(hour == h):
                self.prod_v_hourly_[h] = np.median(pv[hour == h], 0)

        # forecasts: lead (rows ahead) of the first horizon and error std per horizon and
        # column, from the source; multi-horizon files (grid2op's h_forecast) keep their count
        self.forecast_horizons_ = int(source.horizons)
        self.forecast_lead_, self.forecast_std_ = {}, {}
        for kind in ("load_p", "load_q", "prod_p"):
            sl = self.slices_[kind]
            if kind not in source.forecasts:
                self.forecast_lead_[kind] = 1
                self.forecast_std_[kind] = np.zeros((self.forecast_horizons_, sl.stop - sl.start))
                continue
            pairs = list(zip(source.forecasts[kind], source.arrays[kind]))
            lo, hi = self.lo_[sl], self.hi_[sl]
            if self.forecast_horizons_ == 1:  # one row per step: forecast of now or of next?
                errors = {
                    lead: _forecast_errors(
                        [(f[: len(f) - lead, 0], a[lead:]) for f, a in pairs], lo, hi
                    )  # fmt: skip
                    for lead in (0, 1)
                }
                lead = min(errors, key=lambda k: _mean_square(errors[k]))
                self.forecast_lead_[kind] = lead
                self.forecast_std_[kind] = _nanstd(errors[lead])[None, :]
                continue
            std = []
            for h in range(1, self.forecast_horizons_ + 1):  # horizon h forecasts row t + h
                err = [(f[: len(f) - h, h - 1], a[h:]) for f, a in pairs if len(f) > h]
                std.append(_nanstd(_forecast_errors(err, lo, hi)))
            self.forecast_lead_[kind] = 1
            self.forecast_std_[kind] = np.asarray(std)
        self.n_source_steps_ = [len(c) for c in chronics]
        return self

    @staticmethod
    def _latent_acf(z, active, lengths, lag) -> np.ndarray:
        num = den = 0.0
        start = 0
        for n in lengths:
            zc, ac = z[start : start + n], active[start : start + n]
            both = ac[lag:] & ac[:-lag]
            num = num + (zc[lag:] * zc[:-lag] * both).sum(0)
            den = den + np.sqrt((zc[lag:] ** 2 * both).sum(0) * (zc[:-lag] ** 2 * both).sum(0))
            start += n
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)

    @staticmethod
    def _fit_two_ar(acf: np.ndarray, lags: np.ndarray):
        """Least-squares fit of ``w phi_s^k + (1 - w) phi_f^k`` to the ACF (grid over phis)."""
        slow = 1.0 - np.logspace(-4, -0.7, 48)
        fast = np.array([0.0, 0.3, 0.5, 0.7, 0.8, 0.9])
        ps, pf = np.meshgrid(slow, fast, indexing="ij")
        ks = ps.ravel()[:, None] ** lags[None, :]  # (n_grid, n_lags)
        kf = pf.ravel()[:, None] ** lags[None, :]
        d = ks - kf
        v = acf.shape[1]
        phi_s, phi_f, w = np.zeros(v), np.zeros(v), np.zeros(v)
        for j in range(v):
            target = acf[:, j] - kf  # (n_grid, n_lags)
            wj = np.clip((target * d).sum(1) / np.maximum((d * d).sum(1), 1e-12), 0.0, 1.0)
            err = ((wj[:, None] * d - target) ** 2).sum(1)
            best = int(np.argmin(err))
            phi_s[j], phi_f[j], w[j] = ps.ravel()[best], pf.ravel()[best], wj[best]
        return phi_s, phi_f, w

    # --------------------------------------------------------------- sample
    def _profile(self, frac, wday, mon) -> np.ndarray:
        s = np.mod(frac - 0.5, 24.0)
        h0 = np.floor(s).astype(int) % 24
        w = (s - np.floor(s))[:, None]
        hourly = self.hourly_mean_[h0] * (1 - w) + self.hourly_mean_[(h0 + 1) % 24] * w
        return hourly * self.weekday_factor_[wday] * self.month_factor_[mon]

    def _check_fitted(self):
        if not hasattr(self, "quantiles_"):
            raise UserError("InjectionModel is not fitted; call fit(source) first")

    def sample_latent(self, n_steps: int, rng: np.random.Generator) -> np.ndarray:
        """Latent Gaussian path, shape ``(n_steps, n_columns)``: two stationary AR(1) with
        cross-correlation ``corr_``, mixed with weights ``weight_`` (slow) / 1 - weight_."""
        self._check_fitted()
        v = len(self.weight_)
        phi = np.concatenate([self.phi_slow_, self.phi_fast_])
        e = np.hstack([rng.standard_normal((n_steps, v)) @ c.T for c in self.chol_innov_])
        e[0] = np.concatenate([self.chol_corr_ @ rng.standard_normal(v) for _ in range(2)])
        for t in range(1, n_steps):  # AR(1) recursion of both components, vectorised over columns
            e[t] += phi * e[t - 1]
        z = np.sqrt(self.weight_) * e[:, :v] + np.sqrt(1.0 - self.weight_) * e[:, v:]
        return np.clip(z, -self.z_max, self.z_max)

    def _injections(self, z, frac, hour, wday, mon) -> np.ndarray:
        k = self.n_quantiles
        pos = (z + self.z_max) / (2 * self.z_max) * (k - 1)
        i0 = np.clip(np.floor(pos).astype(int), 0, k - 2)
        f = pos - i0
        s = np.mod(frac - 0.5, 24.0)
        h0 = (np.floor(s).astype(int) % 24)[:, None]
        h1 = (h0 + 1) % 24
        w = (s - np.floor(s))[:, None]
        cols = np.arange(z.shape[1])[None, :]
        q = self.quantiles_

        def at(h):
            return q[cols, h, i0] * (1 - f) + q[cols, h, i0 + 1] * f

        x = self._profile(frac, wday, mon) + at(h0) * (1 - w) + at(h1) * w
        x = np.clip(x, self.lo_hour_[hour], self.hi_hour_[hour])
        x[self.zero_hour_[hour]] = 0.0
        return x

    def _dispatch(self, load_p: np.ndarray, prod_p: np.ndarray) -> np.ndarray:
        """Rescale dispatchable generators so generation = load x (1 + loss ratio)."""
        disp = self.dispatchable_
        if not disp.any():
            return prod_p
        prod_p = prod_p.copy()
        target = load_p.sum(1) * (1.0 + self.loss_ratio_) - prod_p[:, ~disp].sum(1)
        current = prod_p[:, disp]
        tot = current.sum(1, keepdims=True)
        shares = np.where(
            tot > 1e-9, current / np.where(tot > 1e-9, tot, 1.0), self.dispatch_share_
        )
        prod_p[:, disp] = np.clip(
            shares * np.maximum(target, 0.0)[:, None], 0.0, self.gen_pmax_[disp]
        )
        return prod_p

    def _within_ramps(self, prod_p: np.ndarray) -> np.ndarray:
        """The dispatchable schedule of one chronic (rows = consecutive steps) moved, step by
        step, into each generator's ramp range from its previous row (and ``[0, pmax]``),
        keeping the row's dispatchable total where the ramps allow it: generators clipped
        at a ramp leave their share to the others in proportion to their remaining room;
        what no generator can take is left to the slack (the power flow's balance)."""
        disp = self.dispatchable_
        if not (self.ramp_limits and self.gen_ramps_ is not None and disp.any()):
            return prod_p
        up, down = (r[disp] for r in self.gen_ramps_)
        pmax = self.gen_pmax_[disp]
        p = prod_p[:, disp].copy()
        for t in range(1, len(p)):
            lo = np.maximum(p[t - 1] - down, 0.0)
            hi = np.maximum(np.minimum(p[t - 1] + up, pmax), lo)
            q = np.clip(p[t], lo, hi)
            gap = float(p[t].sum() - q.sum())
            room = hi - q if gap > 0 else q - lo
            total = float(room.sum())
            if total > 1e-9:
                q = q + np.sign(gap) * room * min(1.0, abs(gap) / total)
            p[t] = q
        out = prod_p.copy()
        out[:, disp] = p
        return out

    def sample(self, n_steps: int, rng: np.random.Generator, start: datetime | None = None) -> dict:
        """One chronic of ``n_steps`` rows: arrays ``load_p, load_q, prod_p, prod_v`` and their
        ``*_forecasted`` versions (grid2op order of loads/gens), plus ``start`` (datetime)."""
        self._check_fitted()
        if int(n_steps) <= 0:
            raise UserError(f"n_steps must be a positive integer, got {n_steps}")
        if start is None:
            start = self.starts_[int(rng.integers(len(self.starts_)))]
        times = pd.date_range(start, periods=int(n_steps), freq=self.interval_)
        frac, hour, wday, mon = _calendar(times)
        z = self.sample_latent(int(n_steps), rng)
        x = self._injections(z, frac, hour, wday, mon)
        out = {kind: x[:, sl] for kind, sl in self.slices_.items()}
        dispatched = self._dispatch(out["load_p"], out["prod_p"])
        out["prod_p"] = self._within_ramps(dispatched)
        ramped = out["prod_p"] - dispatched  # what the ramp limits moved (0 where nothing)
        out["prod_v"] = self.prod_v_hourly_[hour]
        n_h = self.forecast_horizons_
        for kind in ("load_p", "load_q", "prod_p"):
            sl, lead = self.slices_[kind], self.forecast_lead_[kind]
            std = self.forecast_std_[kind]  # (horizons, columns)
            rows = []
            for h in range(n_h):  # horizon h + 1: the row lead + h steps ahead
                ahead = np.vstack([x[lead + h :, sl], np.repeat(x[-1:, sl], lead + h, 0)])
                ahead = ahead[: int(n_steps)]
                noisy = ahead + rng.standard_normal(ahead.shape) * std[h]
                noisy = np.clip(noisy, self.lo_[sl], self.hi_[sl])
                noisy[ahead == 0.0] = 0.0
                rows.append(noisy)
            # grid2op's multi-horizon files: the n_h forecasts of step t are rows t*n_h ...
            out[f"{kind}_forecasted"] = np.stack(rows, axis=1).reshape(-1, sl.stop - sl.start)
        out["prod_p_forecasted"] = self._dispatch(
            out["load_p_forecasted"], out["prod_p_forecasted"]
        )
        if np.any(ramped):  # forecasts follow the ramp-limited schedule of the rows they forecast
            lead = self.forecast_lead_["prod_p"]
            rows = np.arange(int(n_steps))[:, None] + lead + np.arange(n_h)[None, :]
            moved = ramped[np.minimum(rows, int(n_steps) - 1).reshape(-1)]
            out["prod_p_forecasted"] = np.clip(
                out["prod_p_forecasted"] + moved, 0.0, self.gen_pmax_
            )
        out["prod_v_forecasted"] = np.repeat(out["prod_v"], n_h, axis=0)
        out["start"] = times[0].to_pydatetime()
        return out

    def summary(self) -> dict:
        """JSON-friendly description of the fitted model (for generation.json)."""
        self._check_fitted()
        fam = self.family_[~self.zero_hour_]
        names, counts = np.unique(fam.astype(str), return_counts=True)
        return {
            "families_tried": list(self.families),
            "families_chosen": dict(zip(names.tolist(), counts.tolist())),
            "n_columns": int(len(self.weight_)),
            "use_weekday": bool(self.use_weekday_),
            "use_month": bool(self.use_month_),
            "ar_slow_phi_mean": float(self.phi_slow_.mean()),
            "ar_fast_phi_mean": float(self.phi_fast_.mean()),
            "ar_slow_weight_mean": float(self.weight_.mean()),
            "acf_lags": list(self.lags_),
            "loss_ratio": self.loss_ratio_,
            "forecast_lead": dict(self.forecast_lead_),
            "forecast_horizons": self.forecast_horizons_,
            "interval_minutes": self.interval_.total_seconds() / 60,
            "source_steps": self.n_source_steps_,
        }


__all__ = ["FAMILIES", "KINDS", "InjectionModel"]
