"""State that a bookmarked link restores: kept in session state and mirrored in the URL.

`URL_STATE` is the one registry of the address bar: every key any page keeps there, with the pages
that show it and how its text is read. A page declares a key by adding one `UrlKey` to it:

    UrlKey("de_step", ("deepeyes",), read=whole_number)

The session key is the URL name. The page then reads and sets `st.session_state["de_step"]` (a
widget edits it through `persisted("de_step")`); `page_setup` restores it from the address bar
(`restore_from_url`) and the end of the run writes it there (`write_to_url`), on the declared
pages only. A key with fixed `choices` is checked by `keep_valid(name)` before its widget is drawn;
one whose choices depend on the model or the run by `keep_valid(name, options, default)`.

A fragment that changes the view (a picker in it) is made with `url_fragment`, so that its runs
alone write the address bar too.

The address bar wins over the session when a link is opened or Back or Forward pressed, and it
holds something else than the app last wrote there. It is written once per run, so that each change
of the view is one entry of the browser's history; a page switch too (`HISTORY_SCRIPT`).

A click carries the address the browser shows when it is sent, which lags while the app's last
write is on its way (a slider's keys pressed fast): so the address of a click is never read as a
view, and the app writes the address again when what it last sent for the page differs from the
view, though the click's address equals it. Not on every run, nor after a page switch, Back or
Forward, whose address the browser chose: the browser puts a message that arrives after Back or
Forward on the address they went to, so each message sent then may land on the wrong entry. Two
gaps are left, each until the next change of the view: a run replaced by the next click's may lose
its write, and a write overtaken by Back stays on the address Back went to.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from convlens.access import whole_number
from convlens.ui.navigation import IMAGE_PICKER, MODEL_PICKER, pages_with


@dataclass(frozen=True)
class UrlKey:
    """One piece of state that the address bar holds.

    `name` is the query parameter and the session key; `pages` are the URL paths of the pages
    whose address bar shows it (none: every page); `read` turns the URL's text into the session's
    value (None: not understood, the page's default); a session value in (None, "", `unset`) leaves
    the address bar; `choices` and `default` are what `keep_valid(name)` checks against; `derived`
    are session keys that the page derives from this one (a picker's own state), forgotten when a
    link or Back changes it.
    """

    name: str
    pages: tuple[str, ...] = ()
    read: Callable[[str], object] = str
    unset: object = None
    choices: tuple[str, ...] = ()
    default: object = None
    derived: tuple[str, ...] = ()

    def shown_on(self, page: str) -> bool:
        """Whether the address bar of `page` (its URL path) holds this key."""
        return not self.pages or page in self.pages


def whole_number_text(text: str) -> str | None:
    """A whole number from a browser as the session keeps it (a filter: "3"), or None."""
    number = whole_number(text)
    return None if number is None else str(number)


DEEPEYES_SECTIONS = ("training", "layer", "diagnosis")
# The DeepEyes filter picker's "none".
NO_FILTER = -1
# The pages that show one image's way through the model, and so a layer and a filter of it.
FORWARD_PASS_PAGES = ("network", "filters")

URL_STATE: dict[str, UrlKey] = {
    key.name: key
    for key in (
        UrlKey("model", pages_with(MODEL_PICKER)),
        UrlKey(
            "image",
            pages_with(IMAGE_PICKER),
            derived=("image_choice", "fashion_index", "other_source"),
        ),
        UrlKey("layer", FORWARD_PASS_PAGES),
        UrlKey("filter", FORWARD_PASS_PAGES, read=whole_number_text, derived=("filters_unit",)),
        UrlKey("run", ("training", "deepeyes")),
        UrlKey("show", ("filters",)),
        UrlKey("sort", ("filters",)),
        UrlKey("page", ("filters",), read=whole_number),
        UrlKey("at", ("filters",)),
        *(
            UrlKey(name, ("cnnvis",))
            for name in (
                "groups",
                "facet",
                "patch",
                "classes",
                "importance",
                "clusters",
                "moves",
                "edges",
                "step",
                "palette",
                "weak",
                "compare",
            )
        ),
        UrlKey("de_view", ("deepeyes",), choices=DEEPEYES_SECTIONS, default="training"),
        UrlKey("de_step", ("deepeyes",), read=whole_number),
        UrlKey("de_layer", ("deepeyes",)),
        UrlKey("de_filter", ("deepeyes",), read=whole_number, unset=NO_FILTER),
    )
}
URL_KEYS = tuple(URL_STATE)
# Keys that only some pages read, by their URL path: only their address bars show them.
PAGE_URL_KEYS = {
    page: tuple(name for name, key in URL_STATE.items() if page in key.pages)
    for page in dict.fromkeys(page for key in URL_STATE.values() for page in key.pages)
}
# What the app last wrote in the address bar (the registry's keys only), the page and query it last
# sent, whether app.py writes it at the end of the run now going, whether a run that answered Back
# or Forward ended before its page restored the address, and whether Back or Forward chose the
# address since the last write.
_LAST_WRITTEN = "_url_last_written"
_LAST_SENT = "_url_last_sent"
_APP_WRITES = "_url_written_by_app"
_NAVIGATED = "_url_navigated"
_BROWSER_CHOSE = "_url_browser_chose"


def page_keys(page: str) -> tuple[str, ...]:
    """The keys the address bar of `page` (its URL path) holds: the shared ones and its own."""
    return tuple(name for name, key in URL_STATE.items() if key.shown_on(page))


def _url_state() -> dict[str, str]:
    return {name: st.query_params[name] for name in URL_KEYS if name in st.query_params}


def restore_from_url(page: str) -> None:
    """Copy the address bar into session state when a link is opened (the session's runs wrote no
    view yet) or Back or Forward pressed, and it holds a view that the app did not write there last.

    Then the keys it names take its values (read by their `UrlKey.read`), and the keys of `page`
    that it lacks are forgotten, so that the page shows their defaults as it did then. A value
    of `page`'s keys that its key cannot read (`filter=abc`, a number of 400 digits) is said in
    one warning and forgotten. An empty address bar (a page switch empties it) names no view:
    the session's state stays.
    """
    url = _url_state()
    last = st.session_state.get(_LAST_WRITTEN)
    navigated = st.session_state.pop(_NAVIGATED, False) or _history_navigation()
    if navigated:
        st.session_state[_BROWSER_CHOSE] = True
    if not url or url == last or (last is not None and not navigated):
        return
    state = st.session_state
    for name in page_keys(page) if last is not None else ():
        if name not in url:
            state.pop(name, None)
    unreadable = []
    for name, text in url.items():
        key = URL_STATE[name]
        value = key.read(text)
        if value != state.get(name):
            for derived in key.derived:
                state.pop(derived, None)
        if value is None:
            state.pop(name, None)
            if text.strip() and key.shown_on(page):
                unreadable.append(name)
        else:
            state[name] = value
    if unreadable:
        warn_reset(*unreadable)


def write_to_url(page: str) -> None:
    """Mirror the state in the URL so that the address bar is a bookmark of the current view: the
    shared keys and those of `page` (its URL path). Other pages' keys stay in the session, where
    their page finds them again, but leave the address bar.

    One message at most (a message that changes the address is an entry of the browser's history,
    or replaces the entry Back or Forward went to), and none when the address bar already holds
    the view, unless the app's last message since the browser chose the address (by a page
    switch, Back or Forward) said something else: a click's address may lag behind it."""
    own = {}
    for name in page_keys(page):
        value = st.session_state.get(name)
        if value not in (None, "", URL_STATE[name].unset):
            own[name] = str(value)
    st.session_state[_LAST_WRITTEN] = own
    shown = st.query_params.to_dict()
    wanted = {**{k: v for k, v in shown.items() if k not in URL_STATE}, **own}
    sent = st.session_state.get(_LAST_SENT)
    if st.session_state.pop(_BROWSER_CHOSE, False) or not isinstance(sent, tuple):
        sent = st.session_state[_LAST_SENT] = None  # Back or Forward chose what the browser shows
    said_otherwise = sent is not None and sent[0] == page and sent[1] != wanted
    if shown != wanted or said_otherwise:
        st.query_params.from_dict(wanted)
        st.session_state[_LAST_SENT] = (page, wanted)


# Streamlit's page adds an entry to the browser's history for a page switch, with a bare address
# (no query: a sidebar link; `st.switch_page` also first empties the address of the page it
# leaves, an entry of its own), and another for the view that the new page's run then writes, so
# that one Back after a switch seemed to do nothing. The script, drawn on every page by app.py,
# makes them one entry in the browser, which sees the switch's entry before the view's:
# - a view written on a bare address replaces it;
# - a write that empties the address is held until the next: dropped if that one switches pages
#   (it was `st.switch_page`'s), made otherwise, or after 2 s if none comes (a page whose keys all
#   went empty: that bare entry is then replaced by the page's next write);
# - a switch to a page that Back or Forward went through before the one shown, carrying the
#   address shown, is dropped: that page's start reached the browser after they left it (Back
#   pressed twice fast across pages), and Streamlit's page takes it for a switch, which cut off
#   Forward. A switch by a click starts bare;
# - a switch carrying the address shown, which the last push wrote on this page's path after the
#   person's last input and less than 1 s before, replaces it: a fast page's view reached the
#   browser before Streamlit's page had moved the address to its path (leaving DeepEyes for Home),
#   and was written on the old path (a write before the last input was that input's own view);
# - the page's first write, when no input of the person came before it (a press of a mouse button
#   or a key, a click, a change of a field, anywhere, the chain's frame included, or Back or
#   Forward), replaces the address, held first if it empties it: it is the first run's answer to a
#   link (one whose keys the page does not show, or lacks some it does), not a click's, and Back
#   then leaves the link's page.
# Streamlit's embed keys do not count. Installed once per page load; Back and Forward, which
# Streamlit answers with replaceState, are left alone.
HISTORY_SCRIPT = """<script>(() => {
  if (window.__convlensHistory) return;
  window.__convlensHistory = true;
  const embed = new Set(['embed', 'embed_options']);
  const bare = (search) => [...new URLSearchParams(search).keys()].every((k) => embed.has(k));
  const push = history.pushState;
  const replace = (args) => history.replaceState(...args);
  let held = null;
  let passed = [];
  let written = null;
  let lastInput = -Infinity;
  let linkOpen = true;
  const touch = () => {
    lastInput = performance.now();
    linkOpen = false;
  };
  for (const kind of ['pointerdown', 'keydown', 'click', 'input', 'change']) {
    addEventListener(kind, touch, true);
  }
  // a press inside a frame (the chain's) reaches this page as its focus leaving for the frame
  const inFrame = () => document.activeElement?.tagName === 'IFRAME';
  addEventListener('blur', () => inFrame() && touch());
  addEventListener('popstate', () => {
    touch();
    written = null;
    passed.push(location.pathname);
  });
  const answersLink = () => {
    const answers = linkOpen && !inFrame();
    linkOpen = false;
    return answers;
  };
  const add = (args) => {
    passed = [];
    written = null;
    return push.apply(history, args);
  };
  const make = () => {
    if (held && location.href === held.from) (held.answersLink ? replace : add)(held.args);
    held = null;
  };
  history.pushState = function (state, unused, url) {
    const target = url == null ? null : new URL(url, location.href);
    const samePage = target !== null && target.pathname === location.pathname;
    const late = target !== null && !samePage && passed.slice(0, -1).includes(target.pathname)
      && !bare(target.search) && target.search === location.search;
    if (late) return;
    const misplaced = target !== null && !samePage && !bare(target.search)
      && target.search === location.search && written !== null && written.at > lastInput
      && written.href === location.href && performance.now() - written.at < 1000;
    if (misplaced) {
      written = null;
      return replace(arguments);
    }
    if (samePage) make();
    else held = null;
    const first = samePage && answersLink();
    if (samePage && bare(target.search) && !bare(location.search)) {
      const mine = { args: [state, unused, url], from: location.href, answersLink: first };
      held = mine;
      setTimeout(() => held === mine && make(), 2000);
      return;
    }
    if (samePage && (first || bare(location.search))) return replace(arguments);
    const made = add(arguments);
    if (samePage) written = { href: location.href, at: performance.now() };
    return made;
  };
})();</script>"""


def _history_navigation() -> bool:
    """Whether this run answers Back or Forward (the browser says so)."""
    context = get_script_run_ctx()
    return context is not None and context.is_history_navigation


def note_history_navigation() -> None:
    """Remember that this run answers Back or Forward until a page restores the address: a click
    that ends the run before its page starts carries the address, but not the browser's mark.
    app.py calls this first, before anything is sent (each message sent may end the run)."""
    if _history_navigation():
        st.session_state[_NAVIGATED] = True


@contextmanager
def mirrored_in_url(page: str) -> Iterator[None]:
    """Write the state to the URL once the run of `page` inside is done; a page that ends early
    calls `stop_page`, which writes first. Not when the run asked for a rerun, which writes at
    its own end."""
    st.session_state[_APP_WRITES] = page
    try:
        yield
        write_to_url(page)
    finally:
        st.session_state[_APP_WRITES] = None


def stop_page() -> NoReturn:
    """End the page's run here (`st.stop`), the view written to the URL first: once a stop is
    requested Streamlit sends nothing more, so a write after it would be lost."""
    page = st.session_state.get(_APP_WRITES)
    if page:
        write_to_url(page)
    st.stop()


def url_fragment(page: str, view: Callable[..., None], run_every: float | None) -> Callable:
    """Return `view` as a fragment of `page` (`st.fragment`, rerun every `run_every` seconds)
    whose runs write the state to the URL when they end, early returns included: a run of the
    fragment alone does not reach the end of the page, where `mirrored_in_url` writes. Within a
    run of the whole page it leaves that to the page's end, so that the run is one entry of the
    browser's history. A run that asks for a rerun (`st.rerun`) writes at the end of that rerun
    instead; one that ends early (`stop_page`) writes before it ends."""

    @functools.wraps(view)
    def bookmarked(*args: object, **kwargs: object) -> None:
        outer = st.session_state.get(_APP_WRITES)
        st.session_state[_APP_WRITES] = page
        try:
            view(*args, **kwargs)
            if not outer:
                write_to_url(page)
        finally:
            st.session_state[_APP_WRITES] = outer

    return st.fragment(run_every=run_every)(bookmarked)


def write_to_url_if_alone(page: str) -> None:
    """Write the state to the URL now when `page` runs on its own, outside app.py's
    `mirrored_in_url` (AppTest runs a page so after `switch_page`)."""
    if not st.session_state.get(_APP_WRITES):
        write_to_url(page)


# A session keeps its last few uploaded images (each up to server.maxUploadSize) in memory.
MAX_SESSION_UPLOADS = 4


def uploads() -> dict[str, bytes]:
    """Return the images uploaded in this session, by file name."""
    return st.session_state.setdefault("uploads", {})


def keep_upload(name: str, data: bytes) -> None:
    """Keep an uploaded image for this session, dropping the oldest beyond `MAX_SESSION_UPLOADS`."""
    kept = uploads()
    kept.pop(name, None)
    kept[name] = data
    while len(kept) > MAX_SESSION_UPLOADS:
        kept.pop(next(iter(kept)))


def upload_digest(source: str) -> str | None:
    """Return a digest of the uploaded bytes behind `source`, or None for other sources."""
    if not source.startswith("upload:"):
        return None
    data = uploads().get(source.removeprefix("upload:"))
    return hashlib.sha256(data).hexdigest()[:16] if data is not None else None


def persisted(
    key: str,
    on_change: Callable[[], None] | None = None,
    widget: str | None = None,
    seed: object = None,
) -> dict[str, object]:
    """Return the widget arguments that make a widget (key `widget`, by default `key`_widget)
    edit the state `key` across pages.

    Streamlit forgets a widget's value when another page runs; the state lives under a plain
    key that every page keeps, the widget is seeded from it on every run (or from `seed`, when
    the widget shows something else than the state: a hidden DeepEyes section's slider stands
    where its section was drawn), and its change callback (which runs before the script) writes
    the new value back.
    """
    widget = widget or f"{key}_widget"
    if seed is not None:
        st.session_state[widget] = seed
    elif key in st.session_state:
        st.session_state[widget] = st.session_state[key]

    def remember() -> None:
        st.session_state[key] = st.session_state[widget]
        if on_change is not None:
            on_change()

    return {"key": widget, "on_change": remember}


def keep_valid(key: str, options: Sequence[object] | None = None, default: object = None) -> None:
    """Set the state `key` to `default` when it is not one of `options` (absent, or from an old
    or edited bookmark, which is said in one warning naming the parameter), before a widget is
    seeded from it. Without `options`, the key's declared `choices` and `default` (`URL_STATE`)."""
    if options is None:
        options, default = URL_STATE[key].choices, URL_STATE[key].default
    keep_all_valid([(key, options, default)])


def keep_all_valid(checks: Sequence[tuple[str, Sequence[object], object]]) -> None:
    """`keep_valid` for each (key, options, default) of `checks`; the keys reset are said in one
    warning, not one each."""
    reset = [key for key, options, default in checks if _reset_unless_valid(key, options, default)]
    if reset:
        warn_reset(*reset)


def _reset_unless_valid(key: str, options: Sequence[object], default: object) -> bool:
    """Set the state `key` to `default` when it is not one of `options`; return whether a value
    was there to reset (an absent or empty one is not worth a word)."""
    value = st.session_state.get(key)
    if value in options:
        return False
    st.session_state[key] = default
    return value not in (None, "")


def quoted(text: object, limit: int = 60) -> str:
    """A browser's text as a page says it back: one line of at most `limit` characters, as
    inline code, so that markdown in a link (a heading, a link to elsewhere) stays text."""
    plain = " ".join(str(text).replace("`", "'").split())
    return f"`{plain if len(plain) <= limit else plain[: limit - 1] + '…'}`"


def warn_reset(*keys: str) -> None:
    """Say that the address bar's `keys` were not understood and are back to their defaults."""
    named = [f"{key}=" for key in keys]
    if len(named) == 1:
        st.warning(f"The link's {named[0]} was not understood; it is back to its default.")
    else:
        listed = f"{', '.join(named[:-1])} and {named[-1]}"
        st.warning(f"The link's {listed} were not understood; they are back to their defaults.")
