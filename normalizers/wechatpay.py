"""WeChat Pay (微信支付) trade bill: ALL, SUCCESS and REFUND bills, new and old column sets, plain or gzip.

Layout (../shared/reference/channel-formats.md): a header line, detail rows,
a summary header line starting with 总交易单数, one summary row. Comma
separated, no quoting; every value starts with a backtick. UTF-8, CRLF,
sometimes a BOM. Columns are selected by header name, never by position.

Mapping decisions (also in EXTENDING.md):
- amount: 订单金额 (old set: 总金额) for payments; 申请退款金额 (old set:
  退款金额) for refunds. coupon_amount: 代金券金额 / 充值券退款金额 (old set:
  企业红包金额 / 企业红包退款金额).
- fee: 手续费 has 5 decimals; the standard record keeps cents, rounded half up.
- merchant_id: 特约商户号 when it is set (service-provider mode), else 商户号.
- A refund row (交易状态 REFUND) takes its status from 退款状态.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass
from decimal import Decimal

from normalizers.base import ControlReport, Normalizer, RawStatement, Sink
from recon.errors import IntegrityError
from schemas.money import MoneyError, format_money, parse_money, round_money
from schemas.standard import StandardRecord

SUMMARY_FIRST = "总交易单数"
SUMMARY_FIRST_BYTES = SUMMARY_FIRST.encode("utf-8")
BLOCK_BYTES = 16 << 20  # about 50,000 bill lines per Arrow batch
# columns the bulk path reads (besides the column set's role columns)
BULK_COLUMNS = ("交易时间", "商户号", "微信订单号", "商户订单号", "用户标识", "交易状态", "付款银行", "货币种类", "手续费",
                "商户退款单号", "微信退款单号", "退款状态", "退款成功时间", "退款申请时间")
AMOUNT_2DP = r"^\d{1,16}(\.\d{1,2})?$"      # what parse_money accepts, non-negative (StandardRecord's rule)
SIGNED_2DP = r"^-?\d{1,16}(\.\d{1,2})?$"
SIGNED_5DP = r"^-?\d{1,16}(\.\d{1,5})?$"
# a value starting or ending with a character Python's str.strip() removes
_PY_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
NEEDS_ROW_PATH = f'^{_PY_SPACE}|{_PY_SPACE}$|"'
FREE_TEXT = ("商户号", "微信订单号", "商户订单号", "用户标识", "付款银行", "货币种类", "商户退款单号", "微信退款单号")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
PAYMENT_STATUS = {"SUCCESS": "SUCCESS", "REVOKED": "REVOKED", "CLOSED": "CLOSED", "USERPAYING": "PROCESSING",
                  "PAYERROR": "FAILED", "NOTPAY": "PROCESSING"}
REFUND_STATUS = {"SUCCESS": "SUCCESS", "PROCESSING": "PROCESSING", "FAIL": "FAILED", "FAILED": "FAILED",
                 "CHANGE": "FAILED", "REFUNDCLOSE": "CLOSED", "CLOSED": "CLOSED"}
FEE_COLUMN = "手续费"


@dataclass(frozen=True)
class ColumnSet:
    """One generation of the bill's columns (new or old) and which column plays which role.

    ALL, SUCCESS and REFUND bills of a generation differ only by which of its
    columns they carry (SUCCESS drops the refund columns; REFUND adds the
    refund's application and success times), so a header is recognised by its
    names: every name must belong to the generation, and the core must be there.
    """

    name: str
    columns: frozenset[str]
    sub_merchant: str
    amount: str
    coupon: str
    refund_amount: str
    refund_coupon: str
    summary: dict[str, str | None]  # summary field -> detail column it sums (None: the row count)

    def matches(self, header: tuple[str, ...]) -> bool:
        return set(header) <= self.columns and set(CORE) | {self.amount} <= set(header) \
            and len(set(header)) == len(header)

    def bill_type(self, header: tuple[str, ...]) -> str:
        if "退款成功时间" in header:
            return "REFUND"
        return "ALL" if "商户退款单号" in header else "SUCCESS"


def _cols(text: str) -> frozenset[str]:
    return frozenset(text.split(","))


CORE = ("交易时间", "商户号", "微信订单号", "商户订单号", "交易状态", "货币种类", "手续费")
_REFUND_TIMES = ",退款申请时间,退款成功时间"
COLUMN_SETS = (
    ColumnSet(
        name="new",
        columns=_cols("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                      "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,"
                      "商户数据包,手续费,费率,订单金额,申请退款金额,费率备注" + _REFUND_TIMES),
        sub_merchant="特约商户号", amount="订单金额", coupon="代金券金额", refund_amount="申请退款金额",
        refund_coupon="充值券退款金额",
        summary={"总交易单数": None, "应结订单总金额": "应结订单金额", "退款总金额": "退款金额",
                 "充值券退款总金额": "充值券退款金额", "手续费总金额": "手续费", "订单总金额": "订单金额",
                 "申请退款总金额": "申请退款金额"},
    ),
    ColumnSet(
        name="old",
        columns=_cols("交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                      "货币种类,总金额,企业红包金额,微信退款单号,商户退款单号,退款金额,企业红包退款金额,退款类型,退款状态,商品名称,"
                      "商户数据包,手续费,费率" + _REFUND_TIMES),
        sub_merchant="子商户号", amount="总金额", coupon="企业红包金额", refund_amount="退款金额",
        refund_coupon="企业红包退款金额",
        summary={"总交易单数": None, "总交易额": "总金额", "总退款金额": "退款金额",
                 "总企业红包退款金额": "企业红包退款金额", "手续费总金额": "手续费"},
    ),
)


def column_set(header: tuple[str, ...]) -> ColumnSet | None:
    return next((cs for cs in COLUMN_SETS if cs.matches(header)), None)


class RowError(ValueError):
    """A data row that cannot become a standard record."""


def _unbacktick(value: str) -> str:
    return value[1:] if value.startswith("`") else value


def _open(raw: RawStatement):
    """The statement's bytes, gzip undone (tar_type=GZIP), as a buffered stream."""
    stream = raw.stream if hasattr(raw.stream, "peek") else io.BufferedReader(raw.stream)
    if stream.peek(2)[:2] == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"), buffer_size=1 << 20)
    return stream


def _blocks(stream, first_line: int):
    """(number of the first line, bytes of whole lines) in blocks of about BLOCK_BYTES.

    A last line without its newline gets one, so every block ends with b"\n".
    """
    leftover, line = b"", first_line
    while True:
        chunk = stream.read(BLOCK_BYTES)
        if not chunk:
            if leftover:
                yield line, leftover + b"\n"
            return
        data = leftover + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            leftover = data
            continue
        block, leftover = data[:cut + 1], data[cut + 1:]
        yield line, block
        line += block.count(b"\n")


def _split(block: bytes, first_line: int):
    """(line number, line without CR/LF) for each line of a block."""
    for offset, data in enumerate(block.split(b"\n")[:-1]):
        yield first_line + offset, data.rstrip(b"\r")


class WeChatPayNormalizer(Normalizer):
    """The WeChat Pay trade bill (ALL / SUCCESS / REFUND; new and old column sets; plain or gzip).

    Rows are read in batches; a batch whose rows are all clean is converted
    with Arrow in one go (``bulk``), any other batch row by row. Both give
    the same records, byte for byte (a test compares them).
    """

    bulk = True

    def normalize(self, raw: RawStatement, sink: Sink) -> ControlReport:
        where = dict(channel=raw.channel, date=raw.day.isoformat(), file=raw.name)
        self._last_line = 1
        try:
            self._normalize(raw, sink, where)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise IntegrityError(f"the gzip stream is truncated or corrupt after this line ({exc})",
                                 line=self._last_line, **where, hint="download the statement again") from exc
        return self._report

    def _normalize(self, raw: RawStatement, sink: Sink, where: dict) -> None:
        stream = _open(raw)
        first = stream.readline()
        if not first:
            raise IntegrityError("the statement is empty", line=1, **where,
                                 hint="the download was probably cut short; download it again")
        first = first.rstrip(b"\r\n")
        if first.startswith(b"\xef\xbb\xbf"):
            first = first[3:]
        header = self._decode_header(first, 1, where)
        cs = column_set(header)
        if cs is None:
            raise IntegrityError(f"unknown column set ({len(header)} columns starting {','.join(header[:4])}…)",
                                 line=1, **where,
                                 hint="the channel changed its bill format; a normalizer update is needed")
        index = {name: i for i, name in enumerate(header)}
        # a summary field whose column this bill type does not carry sums to zero
        sums = {col: Decimal(0) for col in cs.summary.values() if col}
        report = self._report = ControlReport()
        blind: set[str] = set()  # summed columns a rejected row made impossible to verify
        summary_line = summary = summary_header = None
        last_line = 1

        def detail_lines(block: bytes, first_line: int) -> None:
            """Data lines only. A clean block goes in bulk; anything else line by line (same result)."""
            if self.bulk and self._bulk_batch(block, first_line, header, index, cs, raw, sink, sums):
                report.data_rows += block.count(b"\n")
                return
            for number, data in _split(block, first_line):
                if data.strip():
                    report.data_rows += 1
                    self._row(number, data, header, index, cs, raw, sink, sums, blind)

        for first_line, block in _blocks(stream, 2):
            last_line = self._last_line = first_line + block.count(b"\n") - 1
            if summary_line is None:
                at = 0 if block.startswith(SUMMARY_FIRST_BYTES) else block.find(b"\n" + SUMMARY_FIRST_BYTES) + 1
                if at <= 0 and not block.startswith(SUMMARY_FIRST_BYTES):
                    detail_lines(block, first_line)
                    continue
                if at:
                    detail_lines(block[:at], first_line)
                first_line += block[:at].count(b"\n")
                block = block[at:]
            for number, data in _split(block, first_line):
                if summary_line is None:
                    text = data.decode("utf-8", "replace")
                    summary_line, summary_header = number, tuple(text.split(","))
                    if not set(summary_header) <= set(cs.summary) or SUMMARY_FIRST not in summary_header:
                        raise IntegrityError(f"summary header {text!r} does not match the {cs.name} column set",
                                             line=number, **where, hint="a normalizer update is needed")
                elif summary is None:
                    if data.strip():
                        summary = self._parse_summary(data, number, summary_header, where)
                elif data.strip():
                    raise IntegrityError("unexpected content after the summary row", line=number, **where,
                                         hint="the file is not a single WeChat bill; download it again")
        if summary is None:
            raise IntegrityError("the summary line (总交易单数…) is missing: the file is truncated after this line",
                                 line=summary_line or last_line, **where, hint="download the statement again")
        report.unverified = sorted(f for f, col in cs.summary.items() if col in blind)
        self._check_totals(cs, summary, sums, report, summary_line + 1, where)

    # -- row by row: the reference semantics -------------------------------------------------------------------
    def _row(self, number: int, data: bytes, header, index, cs, raw, sink: Sink, sums: dict, blind: set) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            sink.reject(number, f"not valid UTF-8 at byte {exc.start}", data.decode("utf-8", "replace"))
            blind.update(sums)
            return
        values = [_unbacktick(v) for v in text.split(",")]
        if len(values) != len(header):
            sink.reject(number, f"expected {len(header)} fields, found {len(values)}", text)
            blind.update(sums)
            return
        self._add_to_sums(values, index, sums, blind)
        try:
            sink.record(self._record(values, index, cs, raw, number))
        except (RowError, MoneyError, ValueError) as exc:
            sink.reject(number, str(exc), text)

    # -- in bulk: the same result for clean batches, vectorized with Arrow -------------------------------------
    def _bulk_batch(self, block: bytes, first_line: int, header, index, cs, raw, sink: Sink, sums: dict) -> bool:
        """Convert a block of lines in one go if every row is clean; False (nothing done) otherwise."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        if any(c in raw.name for c in ',"\r\n') or any(c in self.channel.name for c in ',"'):
            return False
        try:
            table = pacsv.read_csv(
                io.BytesIO(block),
                read_options=pacsv.ReadOptions(column_names=list(header)),
                parse_options=pacsv.ParseOptions(delimiter=",", quote_char=False, escape_char=False,
                                                 newlines_in_values=False, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header},
                                                     strings_can_be_null=False))
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return False  # a row with the wrong number of fields, or not UTF-8: row by row
        n = table.num_rows
        if n != block.count(b"\n"):
            return False  # a blank line or a stray CR: line numbers would shift
        empty = pc.fill_null(pa.nulls(n, pa.string()), "")

        def col(name: str):
            if name not in index:
                return empty
            values = table.column(name)
            return pc.if_else(pc.starts_with(values, "`"), pc.utf8_slice_codeunits(values, 1), values)

        def ok(mask) -> bool:
            return bool(pc.all(mask).as_py()) if n else True

        used = {name: col(name) for name in set(BULK_COLUMNS) | {cs.sub_merchant, cs.amount, cs.coupon,
                                                                  cs.refund_amount, cs.refund_coupon}
                | {c for c in cs.summary.values() if c}}
        # What the row path would change, in the free-text columns: surrounding whitespace (it strips) and
        # quotes (they need CSV quoting). The other columns are pinned by exact regexes or set membership.
        for name in FREE_TEXT + (cs.sub_merchant,):
            if not ok(pc.invert(pc.match_substring_regex(used[name], NEEDS_ROW_PATH))):
                return False
        status = used["交易状态"]
        refund = pc.equal(status, "REFUND") if "退款成功时间" not in index else pc.fill_null(
            pc.equal(empty, ""), True)
        refund_time = pc.if_else(pc.not_equal(used["退款成功时间"], ""), used["退款成功时间"], used["退款申请时间"])
        is_time = lambda v: pc.match_substring_regex(v, TIME.pattern)  # noqa: E731
        amount = pc.if_else(refund, used[cs.refund_amount], used[cs.amount])
        coupon = pc.if_else(refund, used[cs.refund_coupon], used[cs.coupon])
        checks = [
            is_time(used["交易时间"]),
            pc.or_(pc.invert(refund), pc.or_(pc.equal(refund_time, ""), is_time(refund_time))),
            pc.if_else(refund, pc.is_in(used["退款状态"], pa.array(list(REFUND_STATUS))),
                       pc.is_in(status, pa.array(list(PAYMENT_STATUS)))),
            pc.match_substring_regex(amount, AMOUNT_2DP),
            pc.match_substring_regex(coupon, SIGNED_2DP),
            pc.match_substring_regex(used[FEE_COLUMN], SIGNED_5DP),
            pc.not_equal(used["商户订单号"], ""),
            pc.or_(pc.invert(refund), pc.not_equal(used["商户退款单号"], "")),
        ]
        checks += [pc.match_substring_regex(used[c], SIGNED_5DP if c == FEE_COLUMN else SIGNED_2DP)
                   for c in sums if c in index]
        if not all(ok(c) for c in checks):
            return False

        def mapped(values, mapping: dict):
            keys = list(mapping)
            return pc.take(pa.array([mapping[k] for k in keys]), pc.index_in(values, pa.array(keys)))

        money = pa.decimal128(18, 2)
        sub = used[cs.sub_merchant]
        out = pa.table({
            "channel": pc.fill_null(pa.nulls(n, pa.string()), self.channel.name),
            "merchant_id": pc.if_else(pc.is_in(sub, pa.array(["", "0"])), used["商户号"], sub),
            "txn_type": pc.if_else(refund, "REFUND", "PAYMENT"),
            "order_no": used["商户订单号"],
            "refund_no": pc.if_else(refund, used["商户退款单号"], ""),
            "channel_txn_id": used["微信订单号"],
            "channel_refund_id": pc.if_else(refund, used["微信退款单号"], ""),
            "status": pc.if_else(refund, mapped(used["退款状态"], REFUND_STATUS), mapped(status, PAYMENT_STATUS)),
            "currency": pc.if_else(pc.equal(used["货币种类"], ""), "CNY", used["货币种类"]),
            "amount": amount.cast(money),
            "fee": pc.round(used[FEE_COLUMN].cast(pa.decimal128(18, 5)), ndigits=2,
                            round_mode="half_towards_infinity").cast(money),
            "coupon_amount": coupon.cast(money),
            "txn_time": pc.if_else(pc.and_(refund, pc.not_equal(refund_time, "")), refund_time, used["交易时间"]),
            "payer_id": used["用户标识"],
            "bank": used["付款银行"],
            "source_file": pc.fill_null(pa.nulls(n, pa.string()), raw.name),
            "source_line": pa.array(range(first_line, first_line + n), pa.int64()),
        })
        for c in sums:
            if c in index:
                total = pc.sum(used[c].cast(pa.decimal128(18, 5 if c == FEE_COLUMN else 2))).as_py()
                sums[c] += total if total is not None else Decimal(0)
        sink.records_table(out)
        return True

    # -- pieces ----------------------------------------------------------------
    @staticmethod
    def _decode_header(data: bytes, number: int, where: dict) -> tuple[str, ...]:
        try:
            return tuple(data.decode("utf-8").split(","))
        except UnicodeDecodeError as exc:
            raise IntegrityError(f"the header is not UTF-8 (byte {exc.start})", line=number, **where,
                                 hint="check that the file is a WeChat Pay bill and was downloaded in binary mode") \
                from exc

    @staticmethod
    def _parse_summary(data: bytes, number: int, names: tuple[str, ...], where: dict) -> dict[str, str]:
        values = [_unbacktick(v) for v in data.decode("utf-8", "replace").split(",")]
        if len(values) != len(names):
            raise IntegrityError(f"summary row has {len(values)} fields, its header {len(names)}", line=number,
                                 **where, hint="download the statement again")
        return dict(zip(names, values))

    @staticmethod
    def _add_to_sums(values, index, sums, blind: set[str]) -> None:
        for col in sums:
            if col not in index:
                continue
            try:
                sums[col] += parse_money(values[index[col]], places=5 if col == FEE_COLUMN else 2)
            except MoneyError:
                blind.add(col)

    def _record(self, v: list[str], index: dict, cs: ColumnSet, raw: RawStatement, number: int) -> StandardRecord:
        def col(name: str) -> str:
            return v[index[name]].strip() if name in index else ""

        txn_time = col("交易时间")
        if not TIME.match(txn_time):
            raise RowError(f"交易时间 {txn_time!r} is not yyyy-MM-dd HH:mm:ss")
        trade_status = col("交易状态")
        fee = round_money(parse_money(col(FEE_COLUMN), places=5))
        sub = col(cs.sub_merchant)
        common = dict(
            channel=self.channel.name, merchant_id=sub if sub not in ("", "0") else col("商户号"),
            order_no=col("商户订单号"), channel_txn_id=col("微信订单号"), currency=col("货币种类") or "CNY",
            fee=fee, txn_time=txn_time, payer_id=col("用户标识"), bank=col("付款银行"),
            source_file=raw.name, source_line=number,
        )
        if trade_status == "REFUND" or "退款成功时间" in index:
            # REFUND bills: the success time, or (still processing) the application time
            refund_time = col("退款成功时间") or col("退款申请时间")
            if refund_time:
                if not TIME.match(refund_time):
                    raise RowError(f"refund time {refund_time!r} is not yyyy-MM-dd HH:mm:ss")
                common["txn_time"] = refund_time
            status = REFUND_STATUS.get(col("退款状态"))
            if status is None:
                raise RowError(f"unknown 退款状态 {col('退款状态')!r}")
            return StandardRecord(
                txn_type="REFUND", refund_no=col("商户退款单号"), channel_refund_id=col("微信退款单号"), status=status,
                amount=parse_money(col(cs.refund_amount)), coupon_amount=parse_money(col(cs.refund_coupon)),
                **common)
        status = PAYMENT_STATUS.get(trade_status)
        if status is None:
            raise RowError(f"unknown 交易状态 {trade_status!r}")
        return StandardRecord(
            txn_type="PAYMENT", refund_no="", channel_refund_id="", status=status,
            amount=parse_money(col(cs.amount)), coupon_amount=parse_money(col(cs.coupon)), **common)

    @staticmethod
    def _check_totals(cs: ColumnSet, summary: dict, sums: dict, report: ControlReport, line: int,
                      where: dict) -> None:
        problems = []
        for field_name, column in cs.summary.items():
            if field_name not in summary:
                continue  # e.g. the SUCCESS bill's documented 4-field summary
            declared = summary[field_name].strip()
            report.declared[field_name] = declared
            if column is None:
                computed = str(report.data_rows)
                ok = declared == computed
            else:
                computed = format(sums[column], "f") if column == FEE_COLUMN else format_money(sums[column])
                try:
                    ok = parse_money(declared, places=5) == sums[column]
                except MoneyError:
                    ok = False
                if field_name in report.unverified:
                    # A row whose amount could not be read makes this total unverifiable, not wrong:
                    # the row is in the rejects, where a person will see it.
                    report.computed[field_name] = computed
                    continue
            report.computed[field_name] = computed
            if not ok:
                problems.append(f"{field_name} says {declared}, the rows add up to {computed}")
        if problems:
            raise IntegrityError("control totals disagree with the rows: " + "; ".join(problems), line=line, **where,
                                 hint="nothing was published for this channel and date; ask the channel to re-issue "
                                      "the bill or download it again")


NORMALIZER = WeChatPayNormalizer
