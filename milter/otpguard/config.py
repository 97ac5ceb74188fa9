"""Typed configuration, read and validated once from TOML.

Every key is consumed by exactly one reader; an unknown key is an error, so a typo never
silently falls back to a default. Errors name the file and the dotted key.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

from .auth.settings import AuthConfig
from .core.brand import BrandProfile, load_brand
from .core.errors import ProfileError
from .core.policy import ALLOW, DENY, PolicyLists, load_list, recipient_domain
from .core.settings import AliasConfig, AnalysisConfig, ScoringConfig

T = TypeVar("T")

LEVELS = ("clean", "suspicious", "phish", "genuine")
ACTIONS = ("tag", "subject", "quarantine", "reject", "banner")


class ConfigError(ProfileError):
    """A bad configuration: names the file and the key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionsConfig:
    monitor: bool = False
    by_level: dict[str, tuple[str, ...]] = field(default_factory=dict)
    subject_prefix: dict[str, str] = field(default_factory=dict)
    reject_text: str = "5.7.1 Message looks like brand impersonation (otpguard)"
    quarantine_reason: str = "otpguard: {level} score={score}"
    banner_text: str = ""
    banner_html: str = ""
    # Remove incoming X-OTPGuard-* fields and Authentication-Results in our (or a forged
    # trusted) authserv-id in every mode, monitor mode included: they are not an action.
    header_hygiene: bool = True


# Debian runs smtpd and cleanup chrooted in the queue directory (master.cf column 5): a socket
# there is reachable chrooted or not, spelt unix:otpguard/otpguard.sock in main.cf (relative
# to the queue directory, where every Postfix daemon runs).
POSTFIX_QUEUE_DIRECTORY = "/var/spool/postfix"
DEFAULT_SOCKET = f"unix:{POSTFIX_QUEUE_DIRECTORY}/otpguard/otpguard.sock"


@dataclass(frozen=True, slots=True, kw_only=True)
class MilterConfig:
    socket: str = DEFAULT_SOCKET
    socket_mode: str = "0660"
    socket_owner: str = ""
    socket_group: str = ""
    on_error: str = "accept"  # accept | tempfail
    spool_bytes: int = 1024 * 1024
    spool_dir: str = ""
    tcp_nodelay: bool = True
    timeout_seconds: int = 600
    cpu_affinity: str = "auto"  # auto | none | CPU list such as "3" or "2,3" or "0-1"
    workers: int | str = "auto"  # "auto" (usable CPUs, capped) or a number of analysis processes
    inline_max_bytes: int = 2048  # with workers: messages this small are analysed in the milter process


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    enabled: bool = True
    listen: str = "127.0.0.1:9469"


@dataclass(frozen=True, slots=True, kw_only=True)
class BurstConfig:
    enabled: bool = True
    threshold: int = 3
    window_seconds: int = 3600
    subject_prefix: dict[str, str] = field(default_factory=dict)
    notice: dict[str, str] = field(default_factory=dict)
    default_language: str = "en"


@dataclass(frozen=True, slots=True, kw_only=True)
class StateConfig:
    backend: str = "memory"  # memory | redis
    redis_url: str = ""
    key_prefix: str = "otpguard:"
    hash_salt: str = ""
    error_log_interval_seconds: int = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConfig:
    level: str = "info"
    format: str = "logfmt"  # logfmt | json
    # "<N>" syslog priority prefixes for journald (sd-daemon(3)): auto = when stderr is the journal.
    priority_prefix: str = "auto"  # auto | always | never


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainPolicy:
    """[policy.recipient_domains."DOMAIN"]: actions and thresholds for mail to that domain."""

    actions: ActionsConfig
    scoring: ScoringConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """[policy]: allow and deny lists (files), per-recipient-domain overrides."""

    allow_file: str = ""
    deny_file: str = ""
    lists: PolicyLists = field(default_factory=PolicyLists)
    recipient_domains: dict[str, DomainPolicy] = field(default_factory=dict)

    def for_recipients(self, rcpts: tuple[str, ...] | list[str]) -> tuple[str, DomainPolicy] | None:
        """The override of the one recipient domain all recipients share, if it has one."""
        if not self.recipient_domains:
            return None
        domain = recipient_domain(rcpts, self.recipient_domains)
        return (domain, self.recipient_domains[domain]) if domain is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineConfig:
    """`otpguard quarantine`: where release/delete are audited, what a released message says."""

    audit_log: str = "syslog"  # "syslog" (facility mail) or an absolute file path
    released_verdict: str = "released"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: str
    brands: tuple[BrandProfile, ...]
    analysis: AnalysisConfig
    scoring: ScoringConfig
    auth: AuthConfig
    actions: ActionsConfig
    milter: MilterConfig
    metrics: MetricsConfig
    bursts: BurstConfig
    state: StateConfig
    aliases: AliasConfig
    logging: LoggingConfig
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    quarantine: QuarantineConfig = field(default_factory=QuarantineConfig)

    def weight(self, symbol: str) -> float:
        return self.scoring.weights.get(symbol, 0.0)

    def actions_for(self, rcpts: tuple[str, ...] | list[str]) -> ActionsConfig:
        """[actions], or the override of the recipients' domain."""
        found = self.policy.for_recipients(rcpts)
        return found[1].actions if found is not None else self.actions

    def scoring_for(self, rcpts: tuple[str, ...] | list[str]) -> ScoringConfig:
        """[scoring], or the thresholds of the recipients' domain."""
        found = self.policy.for_recipients(rcpts)
        return found[1].scoring if found is not None else self.scoring


class _Section:
    """Reads one TOML table; every key read is ticked off, leftovers are errors."""

    def __init__(self, file: Path, prefix: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(file, prefix, "must be a table")
        self.file, self.prefix, self.data, self.seen = file, prefix, data, set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str, kind: type | tuple[type, ...], default: T,
            check: Callable[[Any], str | None] | None = None) -> T:
        self.seen.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; a number must not accept true/false.
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(self.file, self.key(name), f"must be {names}, got {value!r}")
        if check is not None and (problem := check(value)) is not None:
            raise ConfigError(self.file, self.key(name), problem)
        return value  # type: ignore[return-value]

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        v = self.get(name, (int, float), default,
                     lambda x: None if x >= minimum else f"must be >= {minimum}")
        return float(v)

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        return self.get(name, int, default, lambda x: None if x >= minimum else f"must be >= {minimum}")

    def string(self, name: str, default: str, choices: tuple[str, ...] | None = None) -> str:
        check = None
        if choices:
            check = lambda x: None if x in choices else f"must be one of {', '.join(choices)}"  # noqa: E731
        return self.get(name, str, default, check)

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(name, list, list(default),
                         lambda xs: None if all(isinstance(x, str) for x in xs) else "must be a list of strings")
        return tuple(value)

    def boolean(self, name: str, default: bool) -> bool:
        return self.get(name, bool, default)

    def table(self, name: str) -> "_Section":
        self.seen.add(name)
        return _Section(self.file, self.key(name), self.data.get(name, {}))

    def str_map(self, name: str) -> dict[str, str]:
        sub = self.table(name)
        return {k: sub.string(k, "") for k in list(sub.data)}

    def done(self) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            raise ConfigError(self.file, self.key(extra[0]), "unknown key")


MAX_CPU = 8191  # no kernel built with the usual CONFIG_NR_CPUS has more; bounds a range like "0-9999999"


def cpu_list(spec: str) -> tuple[int, ...] | None:
    """milter.cpu_affinity as CPU numbers: None for "auto", () for "none", else "2,3" or "0-1"."""
    spec = spec.strip().lower()
    if spec == "auto":
        return None
    if spec == "none":
        return ()
    cpus: set[int] = set()
    for item in spec.split(","):
        m = re.fullmatch(r"\s*([0-9]+)(?:-([0-9]+))?\s*", item)
        if m is None:
            raise ValueError('must be "auto", "none" or CPU numbers such as "3", "2,3" or "0-1"')
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"bad CPU range {item.strip()!r}: the first CPU must not be above the last")
        if hi > MAX_CPU:
            raise ValueError(f"CPU {hi} is above {MAX_CPU}")
        cpus.update(range(lo, hi + 1))
    return tuple(sorted(cpus))


MAX_WORKERS = 256  # a bound on typos such as 4000; far above any host's useful analysis processes


def _check_workers(value: int | str) -> str | None:
    """milter.workers: "auto" or a whole number of analysis processes from 1 to MAX_WORKERS."""
    if isinstance(value, str):
        return None if value.strip().lower() == "auto" else f'must be "auto" or a number from 1 to {MAX_WORKERS}'
    return None if 1 <= value <= MAX_WORKERS else f"must be from 1 to {MAX_WORKERS}"


def load_config(path: str | Path) -> Config:
    """Load and validate a config file; raises ConfigError naming file and key."""
    file = Path(path)
    try:
        with file.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML: {exc}") from None

    root = _Section(file, "", data)

    g = root.table("general")
    brand_files = g.strings("brands", ("brands/amazon.toml",))
    if not brand_files:
        raise ConfigError(file, "general.brands", "must name at least one brand profile")
    brands = []
    for name in brand_files:
        bpath = (file.parent / name) if not Path(name).is_absolute() else Path(name)
        try:
            brands.append(load_brand(bpath, config_file=file, key="general.brands"))
        except ProfileError as exc:  # the core names the profile file and key; callers catch ConfigError
            raise ConfigError(exc.file, exc.key, exc.problem) from None
    g.done()

    a = root.table("analysis")
    d = AnalysisConfig()
    analysis = AnalysisConfig(
        max_message_bytes=a.integer("max_message_bytes", d.max_message_bytes, 1024),
        max_parse_bytes=a.integer("max_parse_bytes", d.max_parse_bytes, 1024),
        max_part_bytes=a.integer("max_part_bytes", d.max_part_bytes, 1024),
        max_parts=a.integer("max_parts", d.max_parts, 1),
        max_depth=a.integer("max_depth", d.max_depth, 1),
        max_links=a.integer("max_links", d.max_links, 1),
        max_text_chars=a.integer("max_text_chars", d.max_text_chars, 1000),
        pdf_max_pages=a.integer("pdf_max_pages", d.pdf_max_pages, 0),
        pdf_max_bytes=a.integer("pdf_max_bytes", d.pdf_max_bytes, 0),
        time_budget_seconds=a.number("time_budget_seconds", d.time_budget_seconds, 0.1),
        qr_max_images=a.integer("qr_max_images", d.qr_max_images, 0),
        qr_max_pixels=a.integer("qr_max_pixels", d.qr_max_pixels, 10_000),
    )
    if analysis.max_parse_bytes > analysis.max_message_bytes:
        raise ConfigError(file, "analysis.max_parse_bytes", "must be <= analysis.max_message_bytes")
    a.done()

    s = root.table("scoring")
    sw = s.table("weights")
    weights = {k: sw.number(k, 0.0, minimum=-1000.0) for k in list(sw.data)}
    sw.done()
    from .core.pipeline import all_symbols  # the checks define the symbols

    known = all_symbols()
    for name in weights:
        if name not in known:
            raise ConfigError(file, f"scoring.weights.{name}", "unknown symbol")
    scoring = ScoringConfig(suspicious=s.number("suspicious", 5.0), phish=s.number("phish", 10.0), weights=weights)
    if scoring.phish < scoring.suspicious:
        raise ConfigError(file, "scoring.phish", "must be >= scoring.suspicious")
    s.done()

    au = root.table("auth")
    da = AuthConfig()
    auth = AuthConfig(
        verify=au.boolean("verify", da.verify),
        scope=au.string("scope", da.scope, ("brand", "all")),
        authserv_id=au.string("authserv_id", da.authserv_id),
        trusted_authserv_ids=au.strings("trusted_authserv_ids"),
        trusted_hops=au.integer("trusted_hops", da.trusted_hops, 0),
        use_upstream_results=au.boolean("use_upstream_results", da.use_upstream_results),
        trusted_arc_sealers=tuple(x.lower() for x in au.strings("trusted_arc_sealers")),
        nameservers=au.strings("nameservers"),
        port=au.integer("port", da.port, 1),
        query_timeout=au.number("query_timeout", da.query_timeout, 0.01),
        message_budget=au.number("message_budget", da.message_budget, 0.01),
        cache_size=au.integer("cache_size", da.cache_size, 0),
        probe_interval_seconds=au.number("probe_interval_seconds", da.probe_interval_seconds),
        probe_domains=tuple(d.strip().rstrip(".").lower() for d in au.strings("probe_domains")),
    )
    if 0 < auth.probe_interval_seconds < 10:
        raise ConfigError(file, "auth.probe_interval_seconds", "must be 0 (off) or at least 10")
    if not auth.authserv_id or any(c in auth.authserv_id for c in " ;\r\n"):
        raise ConfigError(file, "auth.authserv_id", "must be a non-empty token without spaces or ';'")
    au.done()

    ac = root.table("actions")
    by_level = _action_lists(ac, {})
    prefix = ac.str_map("subject_prefix")
    for level in prefix:
        if level not in LEVELS:
            raise ConfigError(file, f"actions.subject_prefix.{level}", "unknown verdict level")
    actions = ActionsConfig(
        monitor=ac.boolean("monitor", False),
        by_level=by_level,
        subject_prefix=prefix,
        reject_text=ac.string("reject_text", ActionsConfig().reject_text),
        quarantine_reason=ac.string("quarantine_reason", ActionsConfig().quarantine_reason),
        banner_text=ac.string("banner_text", ""),
        banner_html=ac.string("banner_html", ""),
        header_hygiene=ac.boolean("header_hygiene", True),
    )
    if not actions.reject_text.startswith("5."):
        raise ConfigError(file, "actions.reject_text", "must start with an enhanced status code 5.x.y")
    ac.done()

    m = root.table("milter")
    dm = MilterConfig()
    milter = MilterConfig(
        socket=m.string("socket", dm.socket, None),
        socket_mode=m.string("socket_mode", dm.socket_mode),
        socket_owner=m.string("socket_owner", ""),
        socket_group=m.string("socket_group", ""),
        on_error=m.string("on_error", dm.on_error, ("accept", "tempfail")),
        spool_bytes=m.integer("spool_bytes", dm.spool_bytes, 0),
        spool_dir=m.string("spool_dir", ""),
        tcp_nodelay=m.boolean("tcp_nodelay", True),
        timeout_seconds=m.integer("timeout_seconds", dm.timeout_seconds, 1),
        cpu_affinity=m.string("cpu_affinity", dm.cpu_affinity),
        workers=m.get("workers", (int, str), dm.workers, _check_workers),
        inline_max_bytes=m.integer("inline_max_bytes", dm.inline_max_bytes, 0),
    )
    try:
        cpu_list(milter.cpu_affinity)
    except ValueError as exc:
        raise ConfigError(file, "milter.cpu_affinity", str(exc)) from None
    if not (milter.socket.startswith("unix:") or milter.socket.startswith("inet:")):
        raise ConfigError(file, "milter.socket", "must be unix:/path or inet:HOST:PORT")
    try:
        int(milter.socket_mode, 8)
    except ValueError:
        raise ConfigError(file, "milter.socket_mode", "must be an octal mode such as 0660") from None
    m.done()

    me = root.table("metrics")
    metrics = MetricsConfig(enabled=me.boolean("enabled", True), listen=me.string("listen", MetricsConfig().listen))
    me.done()

    b = root.table("bursts")
    db = BurstConfig()
    bursts = BurstConfig(
        enabled=b.boolean("enabled", db.enabled),
        threshold=b.integer("threshold", db.threshold, 1),
        window_seconds=b.integer("window_seconds", db.window_seconds, 1),
        subject_prefix=b.str_map("subject_prefix"),
        notice=b.str_map("notice"),
        default_language=b.string("default_language", db.default_language),
    )
    b.done()

    st = root.table("state")
    state = StateConfig(
        backend=st.string("backend", "memory", ("memory", "redis")),
        redis_url=st.string("redis_url", ""),
        key_prefix=st.string("key_prefix", StateConfig().key_prefix),
        hash_salt=st.string("hash_salt", ""),
        error_log_interval_seconds=st.integer("error_log_interval_seconds", 60, 1),
    )
    if state.backend == "redis" and not state.redis_url:
        raise ConfigError(file, "state.redis_url", "is required when state.backend = \"redis\"")
    st.done()

    al = root.table("aliases")
    aliases = AliasConfig(map={k.lower(): v.lower() for k, v in al.str_map("map").items()})
    al.done()

    lg = root.table("logging")
    logging_cfg = LoggingConfig(
        level=lg.string("level", "info", ("debug", "info", "warning", "error")),
        format=lg.string("format", "logfmt", ("logfmt", "json")),
        priority_prefix=lg.string("priority_prefix", "auto", ("auto", "always", "never")),
    )
    lg.done()

    policy = _policy(root.table("policy"), file, actions, scoring)
    quarantine = _quarantine_section(file, root.table("quarantine"))

    root.done()
    return Config(path=str(file), brands=tuple(brands), analysis=analysis, scoring=scoring, auth=auth,
                  actions=actions, milter=milter, metrics=metrics, bursts=bursts, state=state,
                  aliases=aliases, logging=logging_cfg, policy=policy,
                  quarantine=quarantine)


def _action_lists(section: _Section, defaults: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The action list of each verdict level in an [actions] table (defaults for absent levels)."""
    by_level: dict[str, tuple[str, ...]] = {}
    for level in LEVELS:
        acts = section.strings(level, defaults.get(level, ()))
        for act in acts:
            if act not in ACTIONS:
                raise ConfigError(section.file, section.key(level),
                                  f"unknown action {act!r} (known: {', '.join(ACTIONS)})")
        by_level[level] = acts
    return by_level


_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


def _policy(section: _Section, file: Path, actions: ActionsConfig, scoring: ScoringConfig) -> PolicyConfig:
    """[policy]: list files (read now, and again on every reload) and recipient-domain overrides."""
    lists: dict[str, tuple] = {}
    names: dict[str, str] = {}
    for which in (ALLOW, DENY):
        key = f"{which}_file"
        name = names[which] = section.string(key, "")
        if name:
            path = (file.parent / name) if not Path(name).is_absolute() else Path(name)
            try:
                lists[which] = load_list(path, which=which, config_file=file, key=section.key(key))
            except ProfileError as exc:
                raise ConfigError(exc.file, exc.key, exc.problem) from None
    overrides: dict[str, DomainPolicy] = {}
    domains = section.table("recipient_domains")
    for raw_domain in list(domains.data):
        domain = raw_domain.strip().rstrip(".").lower()
        table = domains.table(raw_domain)
        if not _DOMAIN.match(domain):
            raise ConfigError(file, table.prefix, "must be a domain name such as example.org")
        ov_actions = table.table("actions")
        changed = replace(actions, monitor=ov_actions.boolean("monitor", actions.monitor),
                          by_level=_action_lists(ov_actions, actions.by_level))
        ov_actions.done()
        ov_scoring = table.table("scoring")
        thresholds = replace(scoring, suspicious=ov_scoring.number("suspicious", scoring.suspicious),
                             phish=ov_scoring.number("phish", scoring.phish))
        if thresholds.phish < thresholds.suspicious:
            raise ConfigError(file, ov_scoring.key("phish"), "must be >= the suspicious threshold")
        ov_scoring.done()
        table.done()
        overrides[domain] = DomainPolicy(actions=changed, scoring=thresholds)
    domains.done()
    section.done()
    return PolicyConfig(allow_file=names[ALLOW], deny_file=names[DENY],
                        lists=PolicyLists(allow=lists.get(ALLOW, ()), deny=lists.get(DENY, ())),
                        recipient_domains=overrides)



def _quarantine_section(file: Path, q: _Section) -> QuarantineConfig:
    d = QuarantineConfig()
    out = QuarantineConfig(audit_log=q.string("audit_log", d.audit_log),
                           released_verdict=q.string("released_verdict", d.released_verdict))
    if out.audit_log != "syslog" and not Path(out.audit_log).is_absolute():
        raise ConfigError(file, "quarantine.audit_log", 'must be "syslog" or an absolute file path')
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,19}", out.released_verdict):
        raise ConfigError(file, "quarantine.released_verdict", "must be a lower-case word (a-z, 0-9, - and _)")
    q.done()
    return out


# --- which configuration file ------------------------------------------------------------------

ENV_CONFIG = "OTPGUARD_CONFIG"
SYSTEM_CONFIG = Path("/etc/otpguard/otpguard.toml")


def packaged_config() -> Path:
    """The default configuration shipped inside the package (otpguard/defaults, conf/ in a checkout)."""
    return Path(__file__).resolve().parent / "defaults" / "otpguard.toml"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChoice:
    """The configuration file a command uses, and why that one."""

    path: Path
    source: str  # "--config" | "$OTPGUARD_CONFIG" | "system" | "packaged default"

    def describe(self) -> str:
        how = {"--config": "given with --config", "$OTPGUARD_CONFIG": f"from ${ENV_CONFIG}",
               "system": "the system configuration", "packaged default": "the packaged default"}[self.source]
        return f"{self.path} ({how})"


def locate_config(explicit: str | None, *, environ: dict[str, str] | None = None,
                  system: Path = SYSTEM_CONFIG) -> ConfigChoice:
    """--config, else $OTPGUARD_CONFIG, else /etc/otpguard/otpguard.toml if it exists, else the
    packaged default. An explicit or environment path is used as given even if missing, so the
    admin gets "cannot read" for the file they named instead of a silent fallback."""
    env = os.environ if environ is None else environ
    if explicit:
        return ConfigChoice(path=Path(explicit), source="--config")
    if env.get(ENV_CONFIG):
        return ConfigChoice(path=Path(env[ENV_CONFIG]), source="$OTPGUARD_CONFIG")
    if system.exists():
        return ConfigChoice(path=system, source="system")
    return ConfigChoice(path=packaged_config(), source="packaged default")


def load_chosen(explicit: str | None, announce: Callable[[str], None] | None = None) -> Config:
    """Load the configuration locate_config() picks; announce(text) says which when not --config."""
    choice = locate_config(explicit)
    if announce is not None and choice.source != "--config":
        announce(f"using {choice.describe()}")
    return load_config(choice.path)
