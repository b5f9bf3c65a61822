"""Liberty ``when`` conditions under case analysis, on a hand-made library whose XOR has a
conditional arc per value of the other input plus an unconditional (default) arc, each with
its own delay: the rule (a cond-0 arc is disabled; the default arc is disabled where a
conditional sibling is 1; otherwise all stay enabled, for arrival and slew) checked against
hand values, against OpenSTA where ``sta`` is installed, and the errors for conditions this
reader cannot use."""

from __future__ import annotations

import numpy as np
import pytest

from halo_opt.errors import UserError
from halo_opt.hardware.delay import LibertyDelay
from halo_opt.hardware.liberty import read_liberty
from halo_opt.hardware.netlist import Gate, Netlist
from halo_opt.hardware.opensta import opensta_static_delays, sta_path
from halo_opt.hardware.timing import static_timing


def _tab(v: float) -> str:  # a table constant in load, linear in input slew (slope 0.5)
    return f'index_1 ("0, 100"); index_2 ("0, 10"); values ("{v}, {v}", "{v + 50}, {v + 50}");'


def _arc(rp: str, sense: str, d: float, s: float, when: str | None) -> str:
    w = f'when : "{when}";' if when else ""
    return (f"timing () {{ related_pin : \"{rp}\"; timing_sense : {sense}; {w}\n"
            f"  cell_rise (t) {{ {_tab(d)} }} cell_fall (t) {{ {_tab(d + 1)} }}\n"
            f"  rise_transition (t) {{ {_tab(s)} }} fall_transition (t) {{ {_tab(s + 1)} }} }}\n")


def _lib(when_b0: str = "!B", extra: str = "") -> str:
    # XOR: A->X when !B (positive, 10 ps), when B (negative, 20 ps), default (non-unate, 5 ps, slew 40)
    xor = (_arc("A", "positive_unate", 10, 4, when_b0) + _arc("A", "negative_unate", 20, 8, "B")
           + _arc("A", "non_unate", 5, 40, None) + _arc("B", "non_unate", 7, 2, None))
    buf = _arc("A", "positive_unate", 3, 1, None)
    return f"""library (whenlib) {{
  delay_model : table_lookup; time_unit : "1ps"; capacitive_load_unit (1, ff);
  lu_table_template (t) {{ variable_1 : input_net_transition; variable_2 : total_output_net_capacitance; index_1 ("0, 100"); index_2 ("0, 10"); }}
  cell (XOR) {{ area : 1;
    pin (A) {{ direction : input; capacitance : 0; }} pin (B) {{ direction : input; capacitance : 0; }}
    pin (X) {{ direction : output; function : "A^B"; {xor} }} }}
  cell (BUF) {{ area : 1; pin (A) {{ direction : input; capacitance : 0; }}
    pin (X) {{ direction : output; function : "A"; {buf} }} }}
  {extra}
}}
"""


# nets: a0=2 w0=3 p0=4; n5 = XOR(a0, w0); y = BUF(n5) = 6
VERILOG = """module mac(a, w, p, y);
  input [0:0] a; input [0:0] w; input [0:0] p; output [0:0] y; wire n5;
  XOR g0 (.A(a[0]), .B(w[0]), .X(n5));
  BUF g1 (.A(n5), .X(y[0]));
endmodule
"""


def _net(lib) -> Netlist:
    cells = lib.logic_cells()
    return Netlist("mac", 7, {"a": [2], "w": [3], "p": [4]}, {"y": [6]},
                   [Gate("g0", "XOR", (2, 3), 5), Gate("g1", "BUF", (5,), 6)], cells, meta={"signed": False})


@pytest.fixture()
def whenlib(tmp_path):
    (tmp_path / "w.lib").write_text(_lib())
    return tmp_path / "w.lib"


def test_when_rule_by_hand(whenlib):
    lib = read_liberty(whenlib)
    st = static_timing(_net(lib), LibertyDelay(lib), [0, 1])
    # w=0: XOR is a buffer in A; arcs "when !B" (10/11 ps) enabled, "when B" disabled (cond 0),
    # default disabled (its sibling "!B" is 1). Output slew = "!B" arc's (4 rise, 5 fall).
    # y fall = 11 + BUF fall (4 + 0.5 * 5 = 6.5); y rise = 10 + (3 + 0.5 * 4) = 15.
    # w=1: inverter in A through "when B" (20/21 ps, slews 8/9): y rise = 20 + (3 + 0.5 * 8).
    np.testing.assert_allclose(st.arrival_ps[6, :, 0], [11 + 6.5, 10 + 5])
    np.testing.assert_allclose(st.slew_ps[5, :, 0], [5, 4])
    np.testing.assert_allclose(st.arrival_ps[6, :, 1], [21 + 4 + 4.5, 20 + 3 + 4])
    np.testing.assert_allclose(st.delay_ps, [17.5, 29.5])
    # a condition over the other pin that is never constant (here: A itself) keeps the
    # default arc and the conditional one enabled: the default's 40 ps slew reaches the BUF
    (whenlib.parent / "a.lib").write_text(_lib(when_b0="!A"))
    lib2 = read_liberty(whenlib.parent / "a.lib")
    st2 = static_timing(_net(lib2), LibertyDelay(lib2), [0])
    assert st2.slew_ps[5, 1, 0] == pytest.approx(40)


@pytest.mark.skipif(sta_path() is None, reason="OpenSTA (sta) not installed")
@pytest.mark.parametrize("when_b0", ["!B", "!A", "A | !B"])
def test_when_rule_equals_opensta(tmp_path, when_b0):
    (tmp_path / "w.lib").write_text(_lib(when_b0))
    lib = read_liberty(tmp_path / "w.lib")
    ref = opensta_static_delays(VERILOG, tmp_path / "w.lib", [{"w[0]": 0}, {"w[0]": 1}])
    ours = static_timing(_net(lib), LibertyDelay(lib), [0, 1]).delay_ps
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_unusable_conditions_are_one_line_errors(tmp_path):
    (tmp_path / "bad.lib").write_text(_lib(when_b0="!B &"))  # unreadable condition
    lib = read_liberty(tmp_path / "bad.lib")  # the library still loads ...
    with pytest.raises(UserError, match=r"cell XOR timing arc A -> X: cannot read its when condition '!B &'"):
        static_timing(_net(lib), LibertyDelay(lib), [0])  # ... using the cell fails
    (tmp_path / "pin.lib").write_text(_lib(when_b0="!C"))
    lib = read_liberty(tmp_path / "pin.lib")
    with pytest.raises(UserError, match="uses C, not an input pin"):
        static_timing(_net(lib), LibertyDelay(lib), [0])
