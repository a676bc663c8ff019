# Drawn by syncbn-study report; rerun with: gnuplot test-accuracy-per-epoch.gp
set terminal pngcairo size 900,680 noenhanced
set output 'test-accuracy-per-epoch.png'
set title 'test accuracy per epoch (mean over seeds)'
set key outside right top
set grid
set key outside below
set xlabel 'epoch'
set ylabel 'test accuracy (%)'
set xtics 1
set offsets 0, 0, graph 0.03, graph 0.03
plot 'test-accuracy-per-epoch.dat' index 0 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 1 linewidth 1.5 title 'none · lr=0.001', \
     'test-accuracy-per-epoch.dat' index 1 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 1 linewidth 1.5 title 'bn · lr=0.001', \
     'test-accuracy-per-epoch.dat' index 2 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 2 linewidth 1.5 title 'none · lr=0.01', \
     'test-accuracy-per-epoch.dat' index 3 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 2 linewidth 1.5 title 'bn · lr=0.01', \
     'test-accuracy-per-epoch.dat' index 4 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 3 linewidth 1.5 title 'none · lr=0.1', \
     'test-accuracy-per-epoch.dat' index 5 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 3 linewidth 1.5 title 'bn · lr=0.1', \
     'test-accuracy-per-epoch.dat' index 6 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 4 linewidth 1.5 title 'bn · lr=1.0'
