# Drawn by syncbn-study report; rerun with: gnuplot time_breakdown.gp
set terminal pngcairo size 900,560 noenhanced
set output 'time_breakdown.png'
set title 'time per step by component'
set key outside right top
set grid
set style data histograms
set style histogram rowstacked
set style fill solid 0.8 border -1
set boxwidth 0.75
set xtics rotate by -45 scale 0
set ylabel 'ms per step'
set yrange [0:*]
plot 'time_breakdown.dat' using 2:xtic(1) title 'data', \
     '' using 3 title 'forward', \
     '' using 4 title 'backward', \
     '' using 5 title 'grad_comm_exposed', \
     '' using 6 title 'optimizer', \
     '' using 7 title 'other'
