// halo-opt mac_s8x8_acc24_array, stage mac: w 8 bits, a 8 bits, signed, array multiplier, cpa accumulate, combinational
module mac (
    input  wire signed [7:0] a,
    input  wire signed [7:0] w,
    input  wire signed [23:0] p,
    output wire signed [23:0] y
);
    wire signed [15:0] mv;
    assign mv = a * w;
    assign y = p + mv;
endmodule
