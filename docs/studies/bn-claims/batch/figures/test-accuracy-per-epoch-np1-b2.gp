# Drawn by syncbn-study report; rerun with: gnuplot test-accuracy-per-epoch-np1-b2.gp
set terminal pngcairo size 900,680 noenhanced
set output 'test-accuracy-per-epoch-np1-b2.png'
set title 'test accuracy per epoch (mean over seeds), 1 ranks, batch/rank 2'
set key outside right top
set grid
set key outside below
set xlabel 'epoch'
set ylabel 'test accuracy (%)'
set xtics 1
set offsets 0, 0, graph 0.03, graph 0.03
plot 'test-accuracy-per-epoch-np1-b2.dat' index 0 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 1 linewidth 1.5 title 'none · lr=0.01', \
     'test-accuracy-per-epoch-np1-b2.dat' index 1 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 1 linewidth 1.5 title 'bn · lr=0.01', \
     'test-accuracy-per-epoch-np1-b2.dat' index 2 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 2 linewidth 1.5 title 'none · lr=0.1', \
     'test-accuracy-per-epoch-np1-b2.dat' index 3 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 2 linewidth 1.5 title 'bn · lr=0.1'
