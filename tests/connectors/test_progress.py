import io

from connectors.progress import Progress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_and_cron_gets_nothing_per_chunk():
    tty = Tty()
    bar = Progress("wechatpay bill.csv", stream=tty)
    bar.set_total(1000)
    bar.advance(500)
    bar.finish()
    assert "wechatpay bill.csv [" in tty.getvalue()
    assert tty.getvalue().endswith("\n") and "50.0%" in tty.getvalue()

    plain = io.StringIO()
    quiet = Progress("wechatpay bill.csv", stream=plain)
    quiet.set_total(1000)
    quiet.advance(1000)
    quiet.finish()
    assert plain.getvalue() == ""
