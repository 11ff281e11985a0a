"""``hdfs://`` for the Python side, without a JVM or libhdfs: hdfs-native behind pyarrow's filesystem interface.

``core.storage.Storage`` builds every root's filesystem through ``filesystem(uri)``: a local root gets pyarrow's
own, an ``hdfs://`` (or ``viewfs://``) root gets ``pafs.PyFileSystem(HdfsHandler(...))``, so the storage helper
and everything above it use one interface. The client is configured like Spark's: ``HADOOP_CONF_DIR``
(core-site.xml, hdfs-site.xml: NameNode addresses, HA name services, replication), the user from
``HADOOP_USER_NAME``, Kerberos from the ticket cache or ``RECON_HDFS_PRINCIPAL`` / ``RECON_HDFS_KEYTAB``.

The NameNode's refusals become ``OSError``s the rest of the code already understands: permission denied is
``PermissionError``, a space or name quota is ``EDQUOT``, safe mode is ``ESAFEMODE`` (see
``core.storage.DISK_PROBLEMS``); each message is the server's first line, never its Java stack.

``HdfsLease`` is the run lock on an HDFS root: a file held open for writing (HDFS leases are exclusive, and the
client renews them while the run lives).
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import socket
import tempfile
import time
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

HDFS_SCHEMES = ("hdfs", "viewfs")

# Not a real errno: the NameNode is in safe mode (read-only until it leaves it). core.storage words it.
ESAFEMODE = 100_001

# The NameNode's exception classes, by what the pipeline makes of them.
_REFUSALS = (
    ("AccessControlException", errno.EACCES),
    ("AuthorizationException", errno.EACCES),
    ("DSQuotaExceededException", errno.EDQUOT),
    ("NSQuotaExceededException", errno.EDQUOT),
    ("QuotaExceededException", errno.EDQUOT),
    ("SafeModeException", ESAFEMODE),
    ("FileAlreadyExistsException", errno.EEXIST),
    ("AlreadyBeingCreatedException", errno.EBUSY),
    ("RecoveryInProgressException", errno.EBUSY),
    ("FileNotFoundException", errno.ENOENT),
    ("ParentNotDirectoryException", errno.ENOTDIR),
    ("PathIsNotEmptyDirectoryException", errno.ENOTEMPTY),
)
_RPC = re.compile(r'RPCError\("(?P<cls>[\w.$]+)", "(?P<msg>.*)', re.S)


def is_hdfs(uri: str) -> bool:
    return urlsplit(uri).scheme.lower() in HDFS_SCHEMES


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) of a root URI, like ``pafs.FileSystem.from_uri``."""
    if not is_hdfs(uri):
        return pafs.FileSystem.from_uri(uri)
    parts = urlsplit(uri)
    authority = f"{parts.scheme}://{parts.netloc}" if parts.netloc else None  # None: fs.defaultFS of the conf
    return pafs.PyFileSystem(HdfsHandler(authority)), parts.path or "/"


def _client(authority: str | None):
    try:
        from hdfs_native import Client
    except ImportError:  # pragma: no cover - a dependency of the package
        raise OSError(errno.ENOSYS, "an hdfs:// root needs the hdfs-native package (pip install hdfs-native)")
    principal, keytab = os.environ.get("RECON_HDFS_PRINCIPAL"), os.environ.get("RECON_HDFS_KEYTAB")
    if not os.environ.get("HADOOP_USER_NAME") and os.environ.get("SPARK_USER") and not principal:
        # a driver YARN started (cluster deploy mode): act as the user the application runs as, like Spark does,
        # not as the container's operating-system user (hdfs-native reads HADOOP_USER_NAME when it connects)
        os.environ["HADOOP_USER_NAME"] = os.environ["SPARK_USER"]
    try:
        if principal and keytab:
            return Client(authority, kerberos_principal=principal, kerberos_keytab=keytab)
        return Client(authority)
    except Exception as exc:
        raise refused(exc, authority or "fs.defaultFS") from None


def refused(exc: BaseException, path: str) -> OSError:
    """An hdfs-native failure as an OSError with an errno and the server's first line (no Java stack)."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    m = _RPC.search(text)
    cls, msg = (m.group("cls"), m.group("msg")) if m else ("", text)
    first = msg.replace("\\n", "\n").replace('\\"', '"').split("\n")[0].strip().rstrip('")')
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(errno.ENOENT, f"no such file or folder: {path}", path)
    if isinstance(exc, FileExistsError):
        lease = "lease holder" in text or "currently owned" in text
        return OSError(errno.EBUSY if lease else errno.EEXIST, text.split("\n")[0].strip(), path)
    for name, code in _REFUSALS:
        if cls.endswith(name) or f".{name}" in text[:300]:
            kind = PermissionError if code == errno.EACCES else OSError
            return kind(code, first or name, path)
    # anything else (a DataNode or the NameNode refusing a connection, a pipeline broken, a block missing) is an
    # I/O failure: a whole-file write is sent again, and at last it is told as the storage failing
    return OSError(errno.EIO, first or type(exc).__name__, path)


def _info(status, path: str) -> pafs.FileInfo:
    kind = pafs.FileType.Directory if status.isdir else pafs.FileType.File
    return pafs.FileInfo(path, kind, size=None if status.isdir else status.length,
                         mtime_ns=status.modification_time * 1_000_000)


class HdfsHandler(pafs.FileSystemHandler):
    """pyarrow's filesystem operations on hdfs-native's client. Paths are absolute HDFS paths."""

    def __init__(self, authority: str | None):
        self.authority = authority
        self.client = _client(authority)

    def __eq__(self, other):
        return isinstance(other, HdfsHandler) and other.authority == self.authority

    def __ne__(self, other):
        return not self == other

    def get_type_name(self) -> str:
        return "hdfs"

    def normalize_path(self, path: str) -> str:
        return path

    def _call(self, path: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:
            raise refused(exc, path) from None

    # -- queries ---------------------------------------------------------------------------------------------
    def get_file_info(self, paths):
        out = []
        for path in paths:
            try:
                out.append(_info(self.client.get_file_info(path), path))
            except FileNotFoundError:
                out.append(pafs.FileInfo(path, pafs.FileType.NotFound))
            except Exception as exc:
                raise refused(exc, path) from None
        return out

    def get_file_info_selector(self, selector):
        base = selector.base_dir.rstrip("/") or "/"
        try:
            statuses = list(self.client.list_status(base, selector.recursive))
        except FileNotFoundError:
            if selector.allow_not_found:
                return []
            raise FileNotFoundError(errno.ENOENT, f"no such folder: {base}", base) from None
        except Exception as exc:
            raise refused(exc, base) from None
        return [_info(s, s.path if s.path.startswith("/") else posixpath.join(base, s.path)) for s in statuses]

    # -- folders ---------------------------------------------------------------------------------------------
    def create_dir(self, path, recursive):
        self._call(path, self.client.mkdirs, path, 0o755, recursive)

    def delete_dir(self, path):
        self._call(path, self.client.delete, path, True)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        for info in self.get_file_info_selector(pafs.FileSelector(path, allow_not_found=missing_dir_ok)):
            self._call(info.path, self.client.delete, info.path, True)

    def delete_root_dir_contents(self):
        raise OSError(errno.EPERM, "refusing to empty the root of an HDFS filesystem")

    def delete_file(self, path):
        self._call(path, self.client.delete, path, False)

    def move(self, src, dest):
        """HDFS's rename2: a file replaces a file, a folder replaces only an empty folder (like a local
        rename); never the old rename's "moves it inside an existing folder"."""
        self._call(dest, self.client.rename, src, dest, True)

    def copy_file(self, src, dest):
        with self.open_input_stream(src) as fin, self.open_output_stream(dest, None) as fout:
            while chunk := fin.read(1 << 20):
                fout.write(chunk)

    # -- streams ---------------------------------------------------------------------------------------------
    def open_input_stream(self, path):
        return pa.PythonFile(_Reader(self._call(path, self.client.read, path), path), mode="r")

    def open_input_file(self, path):
        return self.open_input_stream(path)

    def open_output_stream(self, path, metadata):
        return pa.PythonFile(_SpooledUpload(self.client, path), mode="w")

    def open_append_stream(self, path, metadata):
        return pa.PythonFile(_SpooledUpload(self.client, path, append=True), mode="w")


class _Reader:
    """hdfs-native's reader, with its failures (a DataNode gone, a block missing) as OSErrors."""

    def __init__(self, inner, path: str):
        self._inner, self._path = inner, path
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size)
        except Exception as exc:
            raise refused(exc, self._path) from None

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._inner.close()


class _SpooledUpload:
    """A new file, written to a local spool and uploaded whole when closed, again if the upload fails on the way.

    hdfs-native does not recover a write pipeline that loses a DataNode (the Java client does); a whole file can
    be sent again, and a second attempt gets a pipeline of live DataNodes. Only I/O failures are retried: a
    refusal (permission, quota, safe mode) is final at once. What is appended to an existing file is sent once
    (a second attempt could append it twice).
    """

    ATTEMPTS = 4
    PAUSE = 2.0

    def __init__(self, client, path: str, *, append: bool = False):
        self._client, self._path, self._append = client, path, append
        self._spool = tempfile.TemporaryFile(prefix="recon-hdfs-")
        self.closed = False

    def write(self, data) -> int:
        return self._spool.write(data)

    def flush(self) -> None:
        pass

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._spool.tell()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            for attempt in range(1, self.ATTEMPTS + 1):
                try:
                    self._upload()
                    return
                except Exception as exc:
                    err = refused(exc, self._path)
                    if err.errno != errno.EIO or attempt == self.ATTEMPTS or self._append:
                        raise err from None
                    time.sleep(self.PAUSE)
        finally:
            self._spool.close()

    def _upload(self) -> None:
        from hdfs_native import WriteOptions

        self._spool.seek(0)
        with (self._client.append(self._path) if self._append
              else self._client.create(self._path, WriteOptions(overwrite=True))) as out:
            while chunk := self._spool.read(8 << 20):
                out.write(chunk)


# -- the run lock on an HDFS root ------------------------------------------------------------------------------

def _alive_here(holder: str) -> bool:
    """False when ``holder`` (a holder line) names a process of this host that no longer exists."""
    m = re.match(r"pid (\d+) .* on (\S+) since", holder)
    if not m or m.group(2) != socket.gethostname():
        return True
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return True


class HdfsLease:
    """An exclusive lock on an HDFS root: ``path`` held open for writing.

    HDFS gives a file's lease to one client at a time and the client renews it while it lives, so a second run
    (on any host) cannot open the file. The holder's line (pid, command, host, time) is in ``path + ".holder"``
    for the next run's message. When the holder dies its lease lapses after the NameNode's soft limit (60 s by
    default); a holder of this host whose pid is gone is taken over at once by recovering its lease.
    """

    def __init__(self, handler: HdfsHandler, path: str, what: str):
        self.client, self.path, self.what = handler.client, path, what
        self.holder = ""
        self._writer = None

    def try_acquire(self, wait_recovery: float = 20.0) -> bool:
        deadline = time.monotonic() + wait_recovery
        recovered = False
        while True:
            busy = self._open()
            if busy is None:
                break
            self.holder = self._read_holder()
            if not recovered and not _alive_here(self.holder):
                recovered = True  # the holder died on this host: fence it now instead of after the soft limit
                try:
                    self.client.recover_lease(self.path)
                except Exception:
                    pass
            if not recovered or time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        try:
            from hdfs_native import WriteOptions

            with self.client.create(self.path + ".holder", WriteOptions(overwrite=True)) as fh:
                fh.write(f"pid {os.getpid()} ({self.what}) on {socket.gethostname()} since "
                         f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        except Exception:  # a courtesy for the next run's message (a full quota, say); the lease is the lock
            pass
        return True

    def _open(self) -> OSError | None:
        """Open the lock file for writing: None when this client now holds it, else the refusal (EBUSY: another
        client holds it). Never ``overwrite``: HDFS would delete a file another client is writing."""
        from hdfs_native import WriteOptions

        try:
            self._writer = self.client.create(self.path, WriteOptions(overwrite=False, create_parent=True))
            return None
        except Exception as exc:
            err = refused(exc, self.path)
        if err.errno == errno.EEXIST:  # a closed lock file (its holder could not delete it): appending takes it
            try:
                self._writer = self.client.append(self.path)
                return None
            except Exception as exc:
                err = refused(exc, self.path)
        if err.errno in (errno.EBUSY, errno.EEXIST):
            return err
        raise err

    def _read_holder(self) -> str:
        try:
            with self.client.read(self.path + ".holder") as fh:
                return fh.read().decode("utf-8", "replace").strip() or "another run"
        except Exception:
            return "another run"

    def release(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
                self.client.delete(self.path, False)
            except Exception:  # the next run appends to a lock file left closed
                pass
            self._writer = None
