"""One document to PDF through LibreOffice headless, in a child process of its own.

Every conversion starts `soffice --convert-to pdf` in a new session with a profile directory of its own
(LibreOffice admits one process per profile: with one each, conversions run side by side), under an
address-space limit (prlimit) and a time limit at which the whole session is killed. The profile turns
macros off and blocks every link out of the document (linked images and sections, OLE and DDE links,
WEBSERVICE), so a document can neither run code nor pull in a URL or a local file; where the kernel
lets an unprivileged process have a network namespace of its own, the child has no network at all.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from docground.errors import ConversionFailed, ConverterUnavailable

from .guard import PageLimits

log = logging.getLogger("docground.ingest")

# The LibreOffice module that reads each kind of document, and the library that module ships.
COMPONENTS = {"writer": "libswlo.so", "calc": "libsclo.so", "impress": "libsdlo.so"}
NOT_LOADED = "source file could not be loaded"  # what soffice prints when no filter can read the file

# Macros never run (the highest security level, and execution off); links to anything outside the
# document are blocked (a document in /tmp is no trusted location) and never updated.
PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">\
<prop oor:name="MacroSecurityLevel" oor:op="fuse"><value>3</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">\
<prop oor:name="DisableMacrosExecution" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">\
<prop oor:name="BlockUntrustedRefererLinks" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Writer/Content/Update">\
<prop oor:name="Link" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Content/Update">\
<prop oor:name="Link" oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">\
<prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">\
<prop oor:name="ODFRecalcMode" oor:op="fuse"><value>1</value></prop></item>
</oor:items>
"""


class NotLoaded(Exception):
    """LibreOffice could not open the file at all (damaged, password-protected, or not what it claims)."""


def to_pdf(data: bytes, suffix: str, component: str, limits: PageLimits, infilter: str | None = None) -> bytes:
    """The PDF LibreOffice makes of a document; `suffix` names the file it is given, `infilter` forces an
    import filter. Raises NotLoaded, ConversionFailed (time, memory, a crash) or ConverterUnavailable."""
    soffice = _soffice(component)
    with tempfile.TemporaryDirectory(prefix="docground-office-") as tmp:
        folder = Path(tmp)
        (folder / "profile" / "user").mkdir(parents=True)
        (folder / "profile" / "user" / "registrymodifications.xcu").write_text(PROFILE)
        source = folder / f"document.{suffix}"
        source.write_bytes(data)
        command = [*_no_network(), "prlimit", f"--as={limits.convert_memory_mb * 2**20}", "--", soffice,
                   f"-env:UserInstallation={(folder / 'profile').as_uri()}", "--headless", "--invisible",
                   "--norestore", "--nolockcheck", "--nodefault", "--nologo", "--nofirststartwizard",
                   *([f"--infilter={infilter}"] if infilter else []),
                   "--convert-to", "pdf", "--outdir", str(folder / "out"), str(source)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
               "SAL_USE_VCLPLUGIN": "svp"}
        output, status = _run(command, env, folder, limits)
        pdf = folder / "out" / "document.pdf"
        if pdf.is_file() and pdf.stat().st_size > 0:
            return pdf.read_bytes()
    if NOT_LOADED in output:
        raise NotLoaded(output.strip())
    log.warning("LibreOffice ended with status %s and no PDF: %s", status, output.strip()[-500:])
    raise ConversionFailed(f"LibreOffice stopped without a PDF (status {status}): the document may need more than "
                           f"{limits.convert_memory_mb} MiB to convert (DOCGROUND_CONVERT_MEMORY_MB)")


def _run(command: list[str], env: dict[str, str], cwd: Path, limits: PageLimits) -> tuple[str, int]:
    """Runs the conversion in a session of its own. Its output ends when every process of the session is
    gone (they all hold it); at the time limit the whole session is killed, before the leader is reaped,
    so that its id cannot have been given to another process."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, cwd=cwd, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=limits.convert_time_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise ConversionFailed(f"converting the document took longer than {limits.convert_time_s:g} s "
                               "(DOCGROUND_CONVERT_TIME_LIMIT_S)") from None
    return output.decode("utf-8", "replace"), process.returncode


@functools.cache
def _program() -> Path | None:
    found = shutil.which("soffice") or shutil.which("libreoffice")
    return Path(os.path.realpath(found)) if found else None


def _soffice(component: str) -> str:
    """soffice's path, once the module that reads this kind of document is known to be installed."""
    program = _program()
    if program is None or shutil.which("prlimit") is None:
        raise ConverterUnavailable("converting Office, web and text documents needs LibreOffice and prlimit on this "
                                   "machine (Debian: libreoffice-core-nogui, util-linux; `make install`)")
    if not (program.parent / COMPONENTS[component]).exists():
        raise ConverterUnavailable(f"converting this document needs LibreOffice {component.title()} on this "
                                   f"machine (Debian: libreoffice-{component}-nogui; `make install`)")
    return str(program)


@functools.cache
def _no_network() -> tuple[str, ...]:
    """The command prefix that runs the child in a network namespace of its own, where the kernel lets an
    unprivileged process have one; else nothing (the profile still blocks links)."""
    prefix = ("unshare", "--net", "--map-root-user")
    try:
        if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
            return prefix
    except (OSError, subprocess.SubprocessError):
        pass
    log.warning("LibreOffice runs with the network reachable (no user namespaces here); its profile blocks links")
    return ()
