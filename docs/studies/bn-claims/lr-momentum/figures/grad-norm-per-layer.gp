# Drawn by syncbn-study report; rerun with: gnuplot grad-norm-per-layer.gp
set terminal pngcairo size 1400,1740 noenhanced
set output 'grad-norm-per-layer.png'
set title 'gradient norm per layer'
set key outside right top
set grid
set logscale y
set format y '%g'
set xlabel 'step'
set format x '%.0s%c'
set ylabel 'gradient norm'
set multiplot layout 4,2 title 'gradient norm per Linear/Conv weight'
set title 'none · lr=0.001 (seed 0)'
plot 'grad-norm-per-layer.dat' index 0 using 1:2 with lines linewidth 1.5 title '1.weight', \
     'grad-norm-per-layer.dat' index 1 using 1:2 with lines linewidth 1.5 title '3.weight', \
     'grad-norm-per-layer.dat' index 2 using 1:2 with lines linewidth 1.5 title '5.weight', \
     1e-4 with lines linecolor rgb '#a0a0a0' notitle, 1e-1 with lines linecolor rgb '#a0a0a0' notitle
set title 'bn · lr=0.001 (seed 0)'
plot 'grad-norm-per-layer.dat' index 3 using 1:2 with lines linewidth 1.5 title '1.weight', \
     'grad-norm-per-layer.dat' index 4 using 1:2 with lines linewidth 1.5 title '4.weight', \
     'grad-norm-per-layer.dat' index 5 using 1:2 with lines linewidth 1.5 title '7.weight', \
     1e-4 with lines linecolor rgb '#a0a0a0' notitle, 1e-1 with lines linecolor rgb '#a0a0a0' notitle
set title 'none · lr=0.01 (seed 0)'
plot 'grad-norm-per-layer.dat' index 6 using 1:2 with lines linewidth 1.5 title '1.weight', \
     'grad-norm-per-layer.dat' index 7 using 1:2 with lines linewidth 1.5 title '3.weight', \
     'grad-norm-per-layer.dat' index 8 using 1:2 with lines linewidth 1.5 title '5.weight', \
     1e-4 with lines linecolor rgb '#a0a0a0' notitle, 1e-1 with lines linecolor rgb '#a0a0a0' notitle
set title 'bn · lr=0.01 (seed 0)'
plot 'grad-norm-per-layer.dat' index 9 using 1:2 with lines linewidth 1.5 title '1.weight', \
     'grad-norm-per-layer.dat' index 10 using 1:2 with lines linewidth 1.5 title '4.weight', \
     'grad-norm-per-layer.dat' index 11 using 1:2 with lines linewidth 1.5 title '7.weight', \
     1e-4 with lines linecolor rgb '#a0a0a0' notitle, 1e-1 with lines linecolor rgb '#a0a0a0' notitle
set title 'none · lr=0.1 (seed 0)'
plot 'grad-norm-per-layer.dat' index 12 using 1:2 with lines linewidth 1.5 title '1.weight', \
     'grad-norm-per-layer.dat' index 13 using 1:2 with lines linewidth 1.5 title '3.weight', \
     'grad-norm-per-layer.dat' index 14 using 1:2 with lines linewidth 1.5 title '5.weight', \
     1e-4 with lines linecolor rgb '#a0a0a0' notitle, 1e-1 with lines linecolor rgb '#a0a0a0' notitle
set title 'bn · lr=0.1 (seed 0)'
plot 'grad-norm-per-layer.dat' index 15 using 1:2 with lines linewidth 1.5 title '1.weight', \
     'grad-norm-per-layer.dat' index 16 using 1:2 with lines linewidth 1.5 title '4.weight', \
     'grad-norm-per-layer.dat' index 17 using 1:2 with lines linewidth 1.5 title '7.weight', \
     1e-4 with lines linecolor rgb '#a0a0a0' notitle, 1e-1 with lines linecolor rgb '#a0a0a0' notitle
set title 'bn · lr=1.0 (seed 0)'
plot 'grad-norm-per-layer.dat' index 18 using 1:2 with lines linewidth 1.5 title '1.weight', \
     'grad-norm-per-layer.dat' index 19 using 1:2 with lines linewidth 1.5 title '4.weight', \
     'grad-norm-per-layer.dat' index 20 using 1:2 with lines linewidth 1.5 title '7.weight', \
     1e-4 with lines linecolor rgb '#a0a0a0' notitle, 1e-1 with lines linecolor rgb '#a0a0a0' notitle
unset multiplot
