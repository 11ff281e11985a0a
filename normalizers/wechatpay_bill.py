"""The WeChat Pay trade bill as bytes and columns: its column sets (new and old, ALL / SUCCESS / REFUND bills)
chosen by header names, the status maps, backtick-quoted values, and the file read in blocks of whole lines
(gzip or plain) for the normalizer in ``normalizers.wechatpay``."""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass

from normalizers.base import RawStatement, StatementLimits, first_long_line, readable_order_no


SUMMARY_FIRST = "总交易单数"
SUMMARY_FIRST_BYTES = SUMMARY_FIRST.encode("utf-8")
BLOCK_BYTES = 16 << 20  # about 65,000 bill lines per Arrow batch
MAX_WORKERS = 4  # threads converting blocks in bulk (Arrow releases the GIL); more buys nothing on 16 MB blocks
# columns the bulk path reads (besides the column set's role columns)
BULK_COLUMNS = ("交易时间", "商户号", "微信订单号", "商户订单号", "用户标识", "交易状态", "付款银行", "货币种类", "手续费",
                "商户退款单号", "微信退款单号", "退款状态", "退款成功时间", "退款申请时间")
AMOUNT_2DP = r"^\d{1,16}(\.\d{1,2})?$"      # what parse_money accepts, non-negative (StandardRecord's rule)
SIGNED_2DP = r"^-?\d{1,16}(\.\d{1,2})?$"
SIGNED_5DP = r"^-?\d{1,16}(\.\d{1,5})?$"
# the characters Python's str.strip() removes (str.isspace(); a test checks it against the running Python)
PY_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
                "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
FREE_TEXT = ("商户号", "微信订单号", "商户订单号", "用户标识", "付款银行", "货币种类", "商户退款单号", "微信退款单号")
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


def sums_columns(cs: ColumnSet) -> list[str]:
    """The detail columns the summary row totals, each once, in a fixed order."""
    return list(dict.fromkeys(c for c in cs.summary.values() if c))


class RowError(ValueError):
    """A data row that cannot become a standard record."""


def unbacktick(value: str) -> str:
    return value[1:] if value.startswith("`") else value


def open_bill(raw: RawStatement):
    """The statement's bytes, gzip undone (tar_type=GZIP), as a buffered stream. Gzip decompresses only what is
    read, so the reader's limits bound it (``read_blocks``)."""
    stream = raw.stream if hasattr(raw.stream, "peek") else io.BufferedReader(raw.stream)
    if stream.peek(2)[:2] == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"), buffer_size=1 << 20)
    return stream


def read_blocks(stream, first_line: int, limits: StatementLimits, where: dict, budget: int):
    """(number of the first line, bytes of whole lines, number of lines) in blocks of about BLOCK_BYTES.

    Each block is a fresh ``bytearray`` read into directly (no copies of the
    data besides the partial last line carried over). A last line without its
    newline gets one, so every block ends with b"\n". A line longer than
    ``max_line_bytes`` (even one not ended yet) fails at once, so the carried
    part never grows past it: memory stays at a block and a line. More than
    ``budget`` bytes (what ``max_statement_bytes`` leaves after the header)
    fail at the line holding the first byte too many.
    """
    leftover, line, total = b"", first_line, 0
    while True:
        buf = bytearray(len(leftover) + BLOCK_BYTES)
        buf[:len(leftover)] = leftover
        size, view = len(leftover), memoryview(buf)
        while size < len(buf):
            got = stream.readinto(view[size:])
            if not got:
                break
            size += got
            total += got
        view.release()
        if total > budget:
            over_at = size - (total - budget)  # the first byte past the limit
            raise limits.too_large(line + buf.count(b"\n", 0, over_at), where)
        long_at = first_long_line(buf, limits.max_line_bytes, 0, size)
        if long_at >= 0:
            raise limits.line_too_long(line + buf.count(b"\n", 0, long_at), where)
        if size == len(leftover):  # end of file
            if leftover:
                yield line, bytearray(leftover + b"\n"), 1
            return
        cut = buf.rfind(b"\n", 0, size)
        if cut < 0:
            leftover = bytes(buf[:size])
            continue
        leftover = bytes(buf[cut + 1:size])
        del buf[cut + 1:]
        lines = buf.count(b"\n")
        yield line, buf, lines
        line += lines


def split_lines(block: bytes, first_line: int):
    """(line number, line without CR/LF) for each line of a block."""
    for offset, data in enumerate(block.split(b"\n")[:-1]):
        yield first_line + offset, data.rstrip(b"\r")


def worker_count() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def describe_names(header: tuple[str, ...], column_sets) -> str:
    """A header that matches no column set, described without quoting it: the line was not parsed as a bill
    header, so it may hold anything (a secret, another file's text). Only names of a known column set are
    shown, and how many others there are."""
    known_names = set().union(*(cs.columns for cs in column_sets))
    known = [n for n in dict.fromkeys(header) if n in known_names]
    shown = ", ".join(known[:8]) + (", …" if len(known) > 8 else "")
    unknown = sum(1 for n in header if n not in known_names)
    return (f"{len(header)} columns, {unknown} of them not WeChat Pay column names"
            f" (known: {shown or 'none'})")


def rejected_order_no(values: list[str], index: dict) -> str:
    """The 商户订单号 of a rejected row, when it is still at its place and looks like one (else "")."""
    at = index.get("商户订单号")
    return readable_order_no(values[at]) if at is not None and at < len(values) else ""
