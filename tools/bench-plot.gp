# tools/vm-bench.sh's bar chart: ops/s by workload and target, log scale.   gnuplot -e "dir='DIR'" bench-plot.gp
set terminal svg size 1100,520 dynamic font "sans,11" background "white"
set output dir."/bench.svg"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set grid ytics
set ylabel "commands per second (log scale; higher is better)"
set xtics rotate by -30 nomirror
set key outside top center horizontal
set title "TPM commands through each resource manager (QEMU TCG guest, TIS in front of swtpm)"
ncols = system("sed -n 2p ".dir."/plot.dat | wc -w") - 1
plot for [i=2:ncols+1] dir."/plot.dat" using i:xtic(1) title columnheader(i)
