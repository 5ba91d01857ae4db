"""Every view setting in the URL (``st.query_params``), so that a reload, the browser's Back
button and a copied link reopen the same view.

Who wins, the URL or the widgets? The URL, whenever it differs from what this session last
wrote into it (a new session from a shared link or a reload, or Back/Forward changing it);
otherwise the widgets, whose values are then written back at the end of the run. Widget
values are also kept in a plain session key per page, because Streamlit forgets the state of
widgets on pages that are not showing: returning to a page through the sidebar (a URL
without parameters) restores them.

    url = UrlState("cmp")                      # once, at the top of a page
    url.seed(S.CMP_SPLIT, "split", default="test", options=SPLITS)
    split = st.selectbox("Split", SPLITS, key=S.CMP_SPLIT)      # no default: the state has it
    ...
    url.publish()                              # at the end: widgets -> URL
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a yes/no value")


def parse_ids(text: str) -> list[int]:
    """``"3,17,40"`` -> ``[3, 17, 40]`` (sorted, unique); a bad id is a ``ValueError``."""
    return sorted({int(t) for t in text.split(",") if t.strip()})


class UrlState:
    """The URL parameters of one page. ``seed`` before each widget, ``publish`` after all."""

    def __init__(self, page: str):
        self.page = page
        self._params: dict[str, tuple[str, Any, Callable[[Any], Any]]] = {}  # url name -> (session key, default, dump)
        self._extra: dict[str, str | None] = {}
        self.warnings: list[str] = []
        current = {k: st.query_params.get(k) for k in st.query_params.keys()}
        self.current = current
        last = st.session_state.get(self._last_key)
        # the URL speaks when it changed behind our back (new session, reload, Back, a pasted link);
        # then a parameter it leaves out means that setting's default (defaults are not written),
        # unless it has no parameters at all: a page opened from the sidebar keeps its last view
        # ... but not when this run comes from a widget the user just changed: a busy server can
        # rerun before the browser shows the URL the last run wrote, and that stale URL must not
        # undo the change (seen with 8 sessions on 2 cores: a new split reset the layer)
        saved = st.session_state.get(self._saved_key) or {}
        widget_changed = any(k in st.session_state and st.session_state[k] != v for k, v in saved.items())
        self.url_speaks = last is None or (current != last and not widget_changed)
        self.absent_means_default = self.url_speaks and bool(current)
        self._published = False

    @property
    def _last_key(self) -> str:
        return f"{self.page}_url_last"

    @property
    def _saved_key(self) -> str:
        return f"{self.page}_url_saved"

    def asked(self, name: str) -> str | None:
        """The raw URL value of ``name`` when the URL speaks this run, else ``None``."""
        return self.current.get(name) if self.url_speaks else None

    def seed(self, key: str, name: str, default: Any, options: Sequence | None = None,
             parse: Callable[[str], Any] = str, dump: Callable[[Any], Any] | None = None) -> None:
        """Give widget ``key`` its value before it is drawn: the URL's ``name`` when the URL
        speaks (a value outside ``options`` or that ``parse`` rejects is a warning and is
        ignored), else the widget's own state, else what this page last had, else ``default``.
        ``dump`` turns the value into what the URL shows (``parse`` must read it back)."""
        self._params[name] = (key, default, dump or (lambda v: v))
        raw = self.asked(name)
        if raw is None and self.absent_means_default:
            st.session_state[key] = default
            return
        if raw is not None:
            try:
                value = parse(raw)
                if options is not None and value not in options:
                    raise ValueError(f"not one of {', '.join(map(str, options))}")
            except (TypeError, ValueError) as exc:
                self.warnings.append(f"Ignored `{name}={raw}` from the link: {exc}.")
            else:
                st.session_state[key] = value
                return
        if key in st.session_state and (options is None or st.session_state[key] in options):
            return
        saved = st.session_state.get(self._saved_key, {}).get(key)
        st.session_state[key] = saved if saved is not None and (options is None or saved in options) else default

    def set_extra(self, name: str, value: Any) -> None:
        """A URL parameter that is no widget (the highlight); ``None`` removes it."""
        self._extra[name] = _dump(value)

    def publish(self) -> None:
        """Write every seeded widget's value (and the extras) into the URL."""
        values = {}
        for name, (key, default, dump) in self._params.items():
            value = st.session_state.get(key)
            if value is not None and value != default:  # defaults stay out: short links
                values[name] = _dump(dump(value))
        values.update(self._extra)
        values = {k: v for k, v in values.items() if v not in (None, "")}
        if values != self.current:
            st.query_params.from_dict(values)
        st.session_state[self._last_key] = values
        # from now on (a fragment's rerun uses this object again) the URL says what the widgets say
        self.current, self.url_speaks, self.absent_means_default = values, False, False
        self._published = True

    def republish(self) -> None:
        """At the end of a fragment (``st.fragment``): on the fragment's own rerun, write the URL
        again; during the page's full run, leave it to the page's ``publish`` at the end (the
        parts after the fragment still have to read the URL)."""
        if self._published:
            self.publish()
        st.session_state[self._saved_key] = {key: st.session_state.get(key) for key, _, _ in self._params.values()}
