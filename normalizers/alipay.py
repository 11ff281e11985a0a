"""Alipay (支付宝) trade bill: a zip of GBK CSVs (业务明细 + 业务明细(汇总)), entry names in GBK too.

业务明细.csv: '#' header lines, a header row, detail rows, '#' footer lines
whose 交易合计 / 退款合计 give the control totals. Values often end with a
TAB (to keep Excel from mangling them): stripped. Refund rows (业务类型 退款)
carry negative amounts. The 汇总 file's 合计 row cross-checks the counts and
the merchant's receipts.

Mapping decisions (also in DECISIONS.md):
- amount = |订单金额（元）|; coupon_amount = |支付宝红包 + 集分宝 + 支付宝优惠| (what
  Alipay funds; 商家优惠 is the merchant's own discount and is not a coupon).
- fee = |服务费（元）| on payments and −|服务费| on refunds: the file's sign
  convention is not documented, so the sign follows the transaction type.
- txn_time = 完成时间 (for refunds, the refund time); refund_no =
  退款批次号/请求号; payer_id = 对方账户 (already masked by Alipay).
- source_file is the raw zip's name (as for rejects); source_line counts lines
  of the 业务明细 entry inside it. merchant_id is the account of the
  "#账号：[…]" header line.
"""

from __future__ import annotations

import csv
import io
import lzma
import re
import shutil
import tempfile
import zipfile
import zlib
from decimal import Decimal

from core.errors import IntegrityError
from normalizers.base import ControlReport, Normalizer, RawStatement, Sink, read_lines, readable_order_no
from schemas.money import MoneyError, check_money, exact_totals, parse_money, parse_total, round_money
from schemas.standard import StandardRecord
from schemas.times import TimeError, standard_time

# Defences against a hostile or broken archive (reliability.md, "Inputs that attack").
MAX_MEMBERS = 16
MAX_TOTAL_BYTES = 8 << 30
MAX_RATIO = 200
DETAIL = re.compile(r"业务明细\.csv$")
SUMMARY = re.compile(r"业务明细\(汇总\)\.csv$")
TRADE_TOTAL = re.compile(r"^#交易合计：([0-9]+)笔，商家实收共(-?[0-9]+(?:\.[0-9]+)?)元")
REFUND_TOTAL = re.compile(r"^#退款合计：([0-9]+)笔，商家实收退款共(-?[0-9]+(?:\.[0-9]+)?)元")
# What zipfile raises on an entry it cannot give back as written: a CRC or size that lies (BadZipFile), an
# encrypted entry (RuntimeError), a compression method it lacks (NotImplementedError), a corrupt or cut
# deflate / bzip2 / lzma stream (zlib.error, EOFError, OSError, LZMAError).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, zlib.error, EOFError,
              OSError, lzma.LZMAError)
DAMAGED_HINT = ("nothing was published for this channel and date; download the bill again (a new "
                "bill_download_url); if it fails again, ask Alipay for the bill")
REQUIRED = ("支付宝交易号", "商户订单号", "业务类型", "完成时间", "订单金额（元）", "商家实收（元）", "服务费（元）",
            "退款批次号/请求号")
COUPON_COLUMNS = ("支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）")
TYPES = {"交易": "PAYMENT", "退款": "REFUND"}
ACCOUNT = re.compile(r"^#账号：\[(\w+)\]")


class RowError(ValueError):
    """A detail row that cannot become a standard record."""


def _clean(value: str) -> str:
    return value.strip().strip("\t").strip()


def _at(values: list[str], index: dict, name: str) -> str:
    """The value of column ``name`` in a row that may be short ("" when the row ends before it)."""
    at = index.get(name, len(values))
    return values[at] if at < len(values) else ""


def _fields(text: str) -> list[str]:
    """The line's values, each cleaned. ``csv.Error`` (a field past the csv module's 128 KiB limit) becomes a
    RowError: a line too odd to split is the caller's to reject or refuse, never a traceback."""
    try:
        return [_clean(v) for v in next(csv.reader([text]))]
    except csv.Error as exc:
        raise RowError(f"not valid CSV: {exc}") from None


class AlipayNormalizer(Normalizer):
    """The Alipay trade bill zip (业务明细 and its 汇总)."""

    @exact_totals
    def normalize(self, raw: RawStatement, sink: Sink) -> ControlReport:
        where = dict(channel=raw.channel, date=raw.day.isoformat(), file=raw.name)
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:  # zipfile needs to seek
            shutil.copyfileobj(raw.stream, spool, 1 << 20)
            spool.seek(0)
            try:
                archive = zipfile.ZipFile(spool, metadata_encoding="gbk")
            except zipfile.BadZipFile as exc:
                raise IntegrityError(f"not a readable zip archive ({exc})", **where,
                                     hint="the download is truncated or corrupt; download it again") from exc
            with archive:
                detail, summary = self._members(archive, where)
                report = self._detail(archive, detail, raw, sink, where)
                if summary is not None:
                    self._cross_check(archive, summary, report, where)
        return report

    # -- archive -----------------------------------------------------------------------------------------------
    @staticmethod
    def _members(archive: zipfile.ZipFile, where: dict):
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise IntegrityError(f"the archive holds {len(infos)} entries (more than {MAX_MEMBERS})", **where,
                                 hint="this is not an Alipay bill; check the download")
        total = 0
        for info in infos:
            name = info.filename
            if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
                raise IntegrityError(f"unsafe entry name {name!r} in the archive", **where,
                                     hint="refusing to process it; ask the channel")
            if info.flag_bits & 0x1:
                raise IntegrityError(f"entry {name!r} is encrypted: an Alipay bill is not", **where,
                                     hint="refusing it; download the bill again, and if it is encrypted again ask "
                                          "Alipay for the plain bill")
            total += info.file_size
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
                raise IntegrityError(f"entry {name!r} expands {info.file_size // info.compress_size}x "
                                     f"(limit {MAX_RATIO}x)", **where, hint="refusing a possible zip bomb")
        if total > MAX_TOTAL_BYTES:
            raise IntegrityError(f"the archive expands to {total} bytes (limit {MAX_TOTAL_BYTES})", **where,
                                 hint="refusing a possible zip bomb")
        details = [i for i in infos if DETAIL.search(i.filename)]
        summaries = [i for i in infos if SUMMARY.search(i.filename)]
        if len(details) != 1:
            raise IntegrityError(f"expected one …业务明细.csv in the archive, found {len(details)} "
                                 f"({', '.join(i.filename for i in infos)})", **where,
                                 hint="the bill's layout changed or the archive is incomplete")
        return details[0], (summaries[0] if summaries else None)

    def _lines(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: dict):
        """(line number, text) of a GBK member, streamed within the statement limits; bytes are counted against
        the declared size. An entry zipfile cannot read as written is an IntegrityError naming it, never a
        traceback: the archive is damaged or not what Alipay sends."""
        seen, number = 0, 0
        try:
            with archive.open(info) as member:
                # zipfile's own readline(limit) peeks 512 bytes at a time; a C buffered reader is many times faster
                fh = io.BufferedReader(member, buffer_size=1 << 16)
                for number, data in read_lines(fh, self.limits, where):
                    seen += len(data)
                    if seen > info.file_size:
                        raise IntegrityError(f"entry {info.filename} is larger than declared", line=number, **where,
                                             hint="refusing a corrupt archive; " + DAMAGED_HINT)
                    try:
                        text = data.decode("gbk").rstrip("\r\n")
                    except UnicodeDecodeError as exc:
                        raise IntegrityError(f"{info.filename} is not GBK text (byte {exc.start})", line=number,
                                             **where, hint="check the archive; the bill must be downloaded in "
                                                           "binary mode") from exc
                    yield number, text
            if seen != info.file_size:  # zipfile stops quietly where the data ends
                raise IntegrityError(f"entry {info.filename} holds {seen} bytes, its header says {info.file_size}: "
                                     "the archive is damaged", line=number or None, **where, hint=DAMAGED_HINT)
        except ZIP_ERRORS as exc:
            raise IntegrityError(f"entry {info.filename} cannot be read: the archive is damaged "
                                 f"({type(exc).__name__}: {exc})", line=number + 1, **where,
                                 hint=DAMAGED_HINT) from exc

    # -- the detail file ---------------------------------------------------------------------------------------
    def _detail(self, archive, info, raw: RawStatement, sink: Sink, where: dict) -> ControlReport:
        where = {**where, "file": f"{raw.name}:{info.filename}"}
        source = raw.name
        account = ""
        report = ControlReport()
        header = None
        index: dict[str, int] = {}
        counts = {"PAYMENT": 0, "REFUND": 0}
        receipts = {"PAYMENT": Decimal(0), "REFUND": Decimal(0)}
        blind = False
        footer: dict[str, tuple[int, Decimal, int]] = {}
        for number, text in self._lines(archive, info, where):
            if text.startswith("#"):
                m = ACCOUNT.match(text)
                if m:
                    account = m.group(1)
                for kind, pattern in (("PAYMENT", TRADE_TOTAL), ("REFUND", REFUND_TOTAL)):
                    m = pattern.match(text)
                    if m:
                        footer[kind] = (int(m.group(1)), parse_total(m.group(2)), number)
                continue
            if not text.strip():
                continue
            if header is None:
                try:
                    header = _fields(text)
                except RowError as exc:
                    raise IntegrityError(f"the header row is {exc}", line=number, **where,
                                         hint="check that the file is an Alipay bill; download it again") from None
                missing = [c for c in REQUIRED if c not in header]
                if missing:
                    raise IntegrityError(f"unknown column set: missing {', '.join(missing)}", line=number, **where,
                                         hint="the channel changed its bill format; a normalizer update is needed")
                index = {name: i for i, name in enumerate(header)}
                continue
            report.data_rows += 1
            try:
                values, unreadable = _fields(text), None
            except RowError as exc:  # Alipay's values are not quoted: a plain split still finds type and order
                values, unreadable = [_clean(v) for v in text.split(",")], exc
            # Alipay's footer counts rows by type; a short or unreadable row usually still has its type: count it
            kind = TYPES.get(_at(values, index, "业务类型"))
            if kind is not None:
                counts[kind] += 1
            order_no = readable_order_no(_at(values, index, "商户订单号"))
            if unreadable is not None:
                sink.reject(number, str(unreadable), text, order_no)
                blind = True
                continue
            if len(values) != len(header):
                sink.reject(number, f"expected {len(header)} fields, found {len(values)}", text, order_no)
                blind = True
                continue
            try:
                if kind is not None:
                    receipts[kind] += parse_money(values[index["商家实收（元）"]])
            except MoneyError:
                blind = True
            try:
                sink.record(self._record(values, index, kind, source, number, account))
            except (RowError, MoneyError, TimeError, ValueError) as exc:
                sink.reject(number, str(exc), text, order_no)
        if header is None:
            raise IntegrityError("no header row: the detail file is empty or truncated", **where,
                                 hint="download the bill again")
        for kind, label in (("PAYMENT", "交易合计"), ("REFUND", "退款合计")):
            if kind not in footer:
                raise IntegrityError(f"the footer line #{label} is missing: the file is truncated", **where,
                                     hint="download the bill again")
        problems = []
        for kind, label in (("PAYMENT", "交易合计"), ("REFUND", "退款合计")):
            n, amount, line = footer[kind]
            report.declared[f"{label}笔数"], report.computed[f"{label}笔数"] = str(n), str(counts[kind])
            report.declared[f"{label}商家实收"] = format(amount, "f")
            report.computed[f"{label}商家实收"] = format(receipts[kind], "f")
            if n != counts[kind]:
                problems.append((f"{label} says {n} rows, the file has {counts[kind]}", line))
            if blind:
                report.unverified.append(f"{label}商家实收")
            elif amount != receipts[kind]:
                problems.append((f"{label} says {amount}, the rows add up to {receipts[kind]}", line))
        if problems:
            raise IntegrityError("control totals disagree with the rows: " + "; ".join(p for p, _ in problems),
                                 line=problems[0][1], **where,
                                 hint="nothing was published for this channel and date; download the bill again "
                                      "or ask Alipay to re-issue it")
        return report

    def _record(self, v: list[str], index: dict, kind: str | None, source: str, number: int,
                account: str) -> StandardRecord:
        def col(name: str) -> str:
            return v[index[name]] if name in index else ""

        if kind is None:
            raise RowError(f"unknown 业务类型 {col('业务类型')!r}")
        for name in ("创建时间", "完成时间"):  # both must be real times, whichever is used
            if col(name) or name == "完成时间" and not col("创建时间"):
                standard_time(col(name), what=name)
        txn_time = col("完成时间") or col("创建时间")
        amount = parse_money(col("订单金额（元）"))
        if (kind == "REFUND") != (amount < 0) and amount != 0:
            raise RowError(f"{col('业务类型')} row with amount {amount}: refunds are negative, payments positive")
        coupon = check_money(sum((parse_money(col(c) or "0") for c in COUPON_COLUMNS if c in index), Decimal(0)),
                             "coupon (" + " + ".join(c for c in COUPON_COLUMNS if c in index) + ")")
        fee = abs(check_money(round_money(parse_money(col("服务费（元）") or "0")), "服务费（元）"))
        refund_no = col("退款批次号/请求号") if kind == "REFUND" else ""
        if kind == "REFUND" and not refund_no:
            raise RowError("a refund row without 退款批次号/请求号")
        return StandardRecord(
            channel=self.channel.name, merchant_id=account, txn_type=kind,
            order_no=col("商户订单号"), refund_no=refund_no, channel_txn_id=col("支付宝交易号"), channel_refund_id="",
            status="SUCCESS", currency="CNY", amount=abs(amount), fee=fee if kind == "PAYMENT" else -fee,
            coupon_amount=abs(coupon), txn_time=txn_time, payer_id=col("对方账户"), bank="", source_file=source,
            source_line=number)

    # -- the 汇总 file ------------------------------------------------------------------------------------------
    def _cross_check(self, archive, info, report: ControlReport, where: dict) -> None:
        where = {**where, "file": f"{where['file']}:{info.filename}"}
        header = None
        for number, text in self._lines(archive, info, where):
            if text.startswith("#") or not text.strip():
                continue
            try:
                values = _fields(text)
            except RowError as exc:
                raise IntegrityError(f"汇总 line is {exc}", line=number, **where,
                                     hint="the two files of the bill disagree; download it again") from None
            if header is None:
                header = values
                continue
            if values and values[0] == "合计":
                row = dict(zip(header, values))
                checks = (("交易订单总笔数", report.computed.get("交易合计笔数")),
                          ("退款订单总笔数", report.computed.get("退款合计笔数")))
                for name, expected in checks:
                    if name in row and expected is not None and row[name] != expected:
                        raise IntegrityError(f"汇总 {name} says {row[name]}, the detail file has {expected}",
                                             line=number, **where, hint="the two files of the bill disagree; "
                                                                        "download it again or ask Alipay")
                if "商家实收（元）" in row and not report.unverified:
                    total = (Decimal(report.computed["交易合计商家实收"]) + Decimal(report.computed["退款合计商家实收"]))
                    try:  # a total: it may have more digits than one amount
                        declared = parse_total(row["商家实收（元）"])
                    except MoneyError:
                        declared = None
                    if declared != total:
                        raise IntegrityError(f"汇总 商家实收 says {row['商家实收（元）']}, the detail rows add up to "
                                             f"{total}", line=number, **where,
                                             hint="the two files of the bill disagree; download it again")
                report.declared["汇总"] = "checked"
                return
        raise IntegrityError("the 汇总 file has no 合计 row", **where, hint="download the bill again")


NORMALIZER = AlipayNormalizer
