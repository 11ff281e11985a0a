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

The bill's column sets, status maps and block reading are in ``normalizers.wechatpay_bill``; this module
turns rows into standard records (a bulk Arrow path and a row-by-row path that agree byte for byte).
"""

from __future__ import annotations

import gzip
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal

from core.errors import IntegrityError
from normalizers.base import ControlReport, Normalizer, RawStatement, Sink
from normalizers.wechatpay_bill import (AMOUNT_2DP, BULK_COLUMNS, COLUMN_SETS, FEE_COLUMN, FREE_TEXT, PAYMENT_STATUS,
                                        PY_WHITESPACE, REFUND_STATUS, SIGNED_2DP, SIGNED_5DP, SUMMARY_FIRST,
                                        SUMMARY_FIRST_BYTES, ColumnSet, RowError, column_set, describe_names, open_bill,
                                        read_blocks, rejected_order_no, split_lines, sums_columns, unbacktick,
                                        worker_count)
from schemas.money import MoneyError, check_money, exact_totals, format_money, parse_money, parse_total, round_money
from schemas.standard import StandardRecord
from schemas.times import TimeError, arrow_times_valid, standard_time


class WeChatPayNormalizer(Normalizer):
    """The WeChat Pay trade bill (ALL / SUCCESS / REFUND; new and old column sets; plain or gzip).

    Rows are read in blocks; a block whose rows are all clean is converted
    with Arrow in one go (``bulk``), any other block row by row. Both give
    the same records, byte for byte (a test compares them). Blocks are
    converted on ``workers`` threads (Arrow's kernels release the GIL) and
    handed to the sink in file order, so the output does not depend on it.
    """

    bulk = True
    workers: int | None = None  # threads for the bulk conversion; None: one per core (at most MAX_WORKERS)

    @exact_totals
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
        limits = self.limits
        stream = open_bill(raw)
        first = stream.readline(limits.max_line_bytes + 1)
        budget = limits.max_statement_bytes - len(first)  # what the lines after the header may hold
        if budget < 0:
            raise limits.too_large(1, where)
        if not first:
            raise IntegrityError("the statement is empty", line=1, **where,
                                 hint="the download was probably cut short; download it again")
        if len(first) > limits.max_line_bytes and not first.endswith(b"\n"):
            raise limits.line_too_long(1, where)
        first = first.rstrip(b"\r\n")
        if first.startswith(b"\xef\xbb\xbf"):
            first = first[3:]
        header = self._decode_header(first, 1, where)
        cs = column_set(header)
        if cs is None:
            raise IntegrityError(f"unknown column set: {describe_names(header, COLUMN_SETS)}", line=1, **where,
                                 hint="check that the file is a WeChat Pay bill; if the channel changed its bill "
                                      "format, a normalizer update is needed")
        index = {name: i for i, name in enumerate(header)}
        # a summary field whose column this bill type does not carry sums to zero
        sums = {col: Decimal(0) for col in cs.summary.values() if col}
        report = self._report = ControlReport()
        blind: set[str] = set()  # summed columns a rejected row made impossible to verify
        summary_line = summary = summary_header = None
        last_line = 1
        bulk = self.bulk and self._bulk_possible(raw)
        workers = (self.workers or worker_count()) if bulk else 1
        pool = ThreadPoolExecutor(workers, thread_name_prefix="wechatpay-bulk") if workers > 1 else None
        pending: deque = deque()  # blocks handed out, in file order: (bulk job or None, block, first line, lines)

        def finish(item) -> None:
            """Hand one block's rows to the sink: the bulk result, or (no result) row by row."""
            job, block, first_line, lines = item
            result = job.result() if isinstance(job, Future) else job
            if result is not None:
                table, block_sums = result
                for col, total in block_sums.items():
                    sums[col] += total
                report.data_rows += lines
                sink.records_table(table)
                return
            for number, data in split_lines(block, first_line):
                if data.strip():
                    report.data_rows += 1
                    self._row(number, data, header, index, cs, raw, sink, sums, blind)

        def detail_lines(block: bytes, first_line: int, lines: int) -> None:
            """Data lines only. A clean block goes in bulk; anything else line by line (same result)."""
            if not bulk:
                job = None
            elif pool is not None:
                job = pool.submit(self._bulk_batch, block, first_line, lines, header, index, cs, raw)
            else:
                job = self._bulk_batch(block, first_line, lines, header, index, cs, raw)
            pending.append((job, block, first_line, lines))
            while len(pending) > (workers if pool is not None else 0):
                finish(pending.popleft())

        try:
            for first_line, block, lines in read_blocks(stream, 2, limits, where, budget):
                last_line = self._last_line = first_line + lines - 1
                if summary_line is None:
                    at = 0 if block.startswith(SUMMARY_FIRST_BYTES) else block.find(b"\n" + SUMMARY_FIRST_BYTES) + 1
                    if at <= 0 and not block.startswith(SUMMARY_FIRST_BYTES):
                        detail_lines(block, first_line, lines)
                        continue
                    if at:
                        detail = block[:at]
                        detail_rows = detail.count(b"\n")
                        detail_lines(detail, first_line, detail_rows)
                        first_line += detail_rows
                    block = block[at:]
                for number, data in split_lines(block, first_line):
                    if summary_line is None:
                        text = data.decode("utf-8", "replace")
                        summary_line, summary_header = number, tuple(text.split(","))
                        if not set(summary_header) <= set(cs.summary) or SUMMARY_FIRST not in summary_header:
                            known = [n for n in summary_header if n in cs.summary]
                            raise IntegrityError(
                                f"the summary header does not match the {cs.name} column set: "
                                f"{len(summary_header)} fields, {len(summary_header) - len(known)} of them not its "
                                f"summary names (known: {', '.join(known) or 'none'})", line=number, **where,
                                hint="check that the file is one WeChat Pay bill; if the channel changed its "
                                     "format, a normalizer update is needed")
                    elif summary is None:
                        if data.strip():
                            summary = self._parse_summary(data, number, summary_header, where)
                    elif data.strip():
                        raise IntegrityError("unexpected content after the summary row", line=number, **where,
                                             hint="the file is not a single WeChat bill; download it again")
            while pending:
                finish(pending.popleft())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
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
            text = data.decode("utf-8", "replace")
            sink.reject(number, f"not valid UTF-8 at byte {exc.start}", text, rejected_order_no(text.split(","), index))
            blind.update(sums)
            return
        values = [unbacktick(v) for v in text.split(",")]
        if len(values) != len(header):
            sink.reject(number, f"expected {len(header)} fields, found {len(values)}", text,
                        rejected_order_no(values, index))
            blind.update(sums)
            return
        self._add_to_sums(values, index, sums, blind)
        try:
            sink.record(self._record(values, index, cs, raw, number))
        except (RowError, MoneyError, TimeError, ValueError) as exc:
            sink.reject(number, str(exc), text, rejected_order_no(values, index))

    # -- in bulk: the same result for clean blocks, vectorized with Arrow --------------------------------------
    def _bulk_possible(self, raw: RawStatement) -> bool:
        """The bulk path writes names unquoted: a file or channel name that needs CSV quoting goes row by row."""
        return not (any(c in raw.name for c in ',"\r\n') or any(c in self.channel.name for c in ',"'))

    def _bulk_batch(self, block: bytes, first_line: int, lines: int, header, index, cs, raw):
        """(standard table, sums of the block's summed columns) if every row of the block is clean, else None.

        Runs on a worker thread: it only reads its arguments. The conditions
        are exactly those under which the row path gives no reject and the
        same values (the property test compares the two paths).
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        if not lines:
            return None
        wanted = set(BULK_COLUMNS) | {cs.sub_merchant, cs.amount, cs.coupon, cs.refund_amount, cs.refund_coupon} \
            | {c for c in cs.summary.values() if c}
        present = [name for name in header if name in wanted]
        try:
            table = pacsv.read_csv(
                pa.BufferReader(block),
                read_options=pacsv.ReadOptions(column_names=list(header), use_threads=False),
                parse_options=pacsv.ParseOptions(delimiter=",", quote_char=False, escape_char=False,
                                                 newlines_in_values=False, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in present},
                                                     include_columns=present, strings_can_be_null=False))
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None  # a row with the wrong number of fields, or not UTF-8: row by row
        n = table.num_rows
        if n != lines:
            return None  # a blank line or a stray CR: line numbers would shift
        # the columns read above are checked as UTF-8 by Arrow; the others (goods names…) must be too
        try:  # the whole block as one value, cast to text: Arrow validates it without copying it
            pa.Array.from_buffers(pa.large_binary(), 1, [None, pa.array([0, len(block)], pa.int64()).buffers()[1],
                                                         pa.py_buffer(block)]).cast(pa.large_string())
        except pa.ArrowInvalid:
            return None
        empty = pa.repeat(pa.scalar("", pa.string()), n)

        def ok(mask) -> bool:
            return bool(pc.all(mask).as_py())

        cols = {}

        def col(name: str):
            """The column's values without their leading backtick ("" when the bill has no such column)."""
            if name not in cols:
                if name not in index:
                    cols[name] = empty
                else:
                    values = table.column(name)
                    ticked = pc.starts_with(values, "`")
                    if ok(ticked) and not pc.any(pc.starts_with(values, "``")).as_py():
                        cols[name] = pc.ascii_ltrim(values, "`")  # one backtick each: trimming is removing it
                    else:
                        cols[name] = pc.if_else(ticked, pc.utf8_slice_codeunits(values, 1), values)
            return cols[name]

        status = col("交易状态")
        if "退款成功时间" in index:  # a REFUND bill: every row is a refund
            refund = pa.repeat(pa.scalar(True), n)
            any_refund = True
        else:
            refund = pc.equal(status, "REFUND")
            any_refund = bool(pc.any(refund).as_py())
        amount = pc.if_else(refund, col(cs.refund_amount), col(cs.amount)) if any_refund else col(cs.amount)
        coupon = pc.if_else(refund, col(cs.refund_coupon), col(cs.coupon)) if any_refund else col(cs.coupon)
        summed = [c for c in sums_columns(cs) if c in index and c != FEE_COLUMN]
        # The free-text columns as the row path would leave them: no surrounding whitespace (it strips), no
        # quotes (they need CSV quoting). The other columns are pinned by exact patterns or set membership.
        quotes = b'"' in block
        for name in FREE_TEXT + (cs.sub_merchant,):
            values = col(name)
            if not ok(pc.equal(pc.utf8_trim(values, PY_WHITESPACE), values)):
                return None
            if quotes and pc.any(pc.match_substring(values, '"')).as_py():
                return None
        if not ok(pc.not_equal(col("商户订单号"), "")):
            return None
        if not arrow_times_valid(col("交易时间")):
            return None  # a time parse_time refuses (or one Arrow cannot tell): row by row, where it is rejected
        # Every amount in one regex per row, over the values joined with "," (a value of the unquoted bill never
        # holds a comma, so this is each value against its own pattern): the amount (not negative), the coupon,
        # the fee (5 decimals) and every summed column.
        fields = [amount, coupon, col(FEE_COLUMN)] + [col(c) for c in summed]
        patterns = [AMOUNT_2DP, SIGNED_2DP, SIGNED_5DP] + [SIGNED_2DP] * len(summed)
        joined = "^" + ",".join(p[1:-1].replace("(", "(?:") for p in patterns) + "$"  # no capture: faster
        if not ok(pc.match_substring_regex(pc.binary_join_element_wise(*fields, ","), joined)):
            return None
        refund_time = None
        if any_refund:
            if not ok(pc.or_(pc.invert(refund), pc.not_equal(col("商户退款单号"), ""))):
                return None
            if "退款成功时间" in index or "退款申请时间" in index:
                refund_time = pc.if_else(pc.not_equal(col("退款成功时间"), ""), col("退款成功时间"), col("退款申请时间"))
                # the row path checks both times of a refund row, whichever it uses (the used one is one of them)
                for name in ("退款成功时间", "退款申请时间"):
                    stamp = col(name)
                    if not arrow_times_valid(stamp, pc.and_(refund, pc.not_equal(stamp, ""))):
                        return None

        def mapped(values, mapping: dict):
            keys = list(mapping)
            return pc.take(pa.array([mapping[k] for k in keys]), pc.index_in(values, pa.array(keys)))

        # a value outside the mapping comes out null: the row path would reject that row
        status_out = pc.if_else(refund, mapped(col("退款状态"), REFUND_STATUS), mapped(status, PAYMENT_STATUS)) \
            if any_refund else mapped(status, PAYMENT_STATUS)
        if status_out.null_count:
            return None

        try:  # the checks let through only what Arrow holds, but a fee of 14+ digits does not fit: row by row
            money = pa.decimal128(18, 2)
            fee5 = col(FEE_COLUMN).cast(pa.decimal128(18, 5))
            decimals = {c: col(c).cast(money) for c in summed}  # every value of these columns was checked
            block_sums = {}
            for c in sums_columns(cs):
                if c in index:
                    total = pc.sum(fee5 if c == FEE_COLUMN else decimals[c]).as_py()
                    block_sums[c] = total if total is not None else Decimal(0)

            def money_of(selected, refund_column: str, payment_column: str):
                """The selected amount as decimal; from the casts above when both columns were cast."""
                if not any_refund and payment_column in decimals:
                    return decimals[payment_column]
                if refund_column in decimals and payment_column in decimals:
                    return pc.if_else(refund, decimals[refund_column], decimals[payment_column])
                return selected.cast(money)

            sub = col(cs.sub_merchant)
            currency = col("货币种类")
            txn_time = col("交易时间")
            if refund_time is not None:
                txn_time = pc.if_else(pc.and_(refund, pc.not_equal(refund_time, "")), refund_time, txn_time)
            out = pa.table({
                "channel": pa.repeat(pa.scalar(self.channel.name, pa.string()), n),
                "merchant_id": pc.if_else(pc.is_in(sub, pa.array(["", "0"])), col("商户号"), sub),
                "txn_type": pc.if_else(refund, "REFUND", "PAYMENT"),
                "order_no": col("商户订单号"),
                "refund_no": pc.if_else(refund, col("商户退款单号"), "") if any_refund else empty,
                "channel_txn_id": col("微信订单号"),
                "channel_refund_id": pc.if_else(refund, col("微信退款单号"), "") if any_refund else empty,
                "status": status_out,
                "currency": pc.if_else(pc.equal(currency, ""), "CNY", currency),
                "amount": money_of(amount, cs.refund_amount, cs.amount),
                "fee": pc.round(fee5, ndigits=2, round_mode="half_towards_infinity").cast(money),
                "coupon_amount": money_of(coupon, cs.refund_coupon, cs.coupon),
                "txn_time": txn_time,
                "payer_id": col("用户标识"),
                "bank": col("付款银行"),
                "source_file": pa.repeat(pa.scalar(raw.name, pa.string()), n),
                "source_line": pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), first_line - 1),
            })
        except pa.ArrowInvalid:
            return None
        return out, block_sums

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
        values = [unbacktick(v) for v in data.decode("utf-8", "replace").split(",")]
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

        txn_time = standard_time(col("交易时间"), what="交易时间")
        trade_status = col("交易状态")
        fee = check_money(round_money(parse_money(col(FEE_COLUMN), places=5)), FEE_COLUMN)
        sub = col(cs.sub_merchant)
        common = dict(
            channel=self.channel.name, merchant_id=sub if sub not in ("", "0") else col("商户号"),
            order_no=col("商户订单号"), channel_txn_id=col("微信订单号"), currency=col("货币种类") or "CNY",
            fee=fee, txn_time=txn_time, payer_id=col("用户标识"), bank=col("付款银行"),
            source_file=raw.name, source_line=number,
        )
        if trade_status == "REFUND" or "退款成功时间" in index:
            # REFUND bills: the success time, or (still processing) the application time
            for name in ("退款成功时间", "退款申请时间"):
                if col(name):
                    standard_time(col(name), what=name)
            refund_time = col("退款成功时间") or col("退款申请时间")
            if refund_time:
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
                try:  # a total, not an amount: it may have more digits than DECIMAL(18,2)
                    ok = parse_total(declared, places=5) == sums[column]
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
