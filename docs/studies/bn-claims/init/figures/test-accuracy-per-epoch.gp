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
plot 'test-accuracy-per-epoch.dat' index 0 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 1 linewidth 1.5 title 'none · init=kaiming lr=0.01', \
     'test-accuracy-per-epoch.dat' index 1 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 1 linewidth 1.5 title 'bn · init=kaiming lr=0.01', \
     'test-accuracy-per-epoch.dat' index 2 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 2 linewidth 1.5 title 'none · init=kaiming lr=0.1', \
     'test-accuracy-per-epoch.dat' index 3 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 2 linewidth 1.5 title 'bn · init=kaiming lr=0.1', \
     'test-accuracy-per-epoch.dat' index 4 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 3 linewidth 1.5 title 'none · init=xavier lr=0.01', \
     'test-accuracy-per-epoch.dat' index 5 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 3 linewidth 1.5 title 'bn · init=xavier lr=0.01', \
     'test-accuracy-per-epoch.dat' index 6 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 4 linewidth 1.5 title 'none · init=xavier lr=0.1', \
     'test-accuracy-per-epoch.dat' index 7 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 4 linewidth 1.5 title 'bn · init=xavier lr=0.1', \
     'test-accuracy-per-epoch.dat' index 8 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 5 linewidth 1.5 title 'none · init=small lr=0.01', \
     'test-accuracy-per-epoch.dat' index 9 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 5 linewidth 1.5 title 'bn · init=small lr=0.01', \
     'test-accuracy-per-epoch.dat' index 10 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 6 linewidth 1.5 title 'none · init=small lr=0.1', \
     'test-accuracy-per-epoch.dat' index 11 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 6 linewidth 1.5 title 'bn · init=small lr=0.1', \
     'test-accuracy-per-epoch.dat' index 12 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 7 linewidth 1.5 title 'none · init=large lr=0.01', \
     'test-accuracy-per-epoch.dat' index 13 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 7 linewidth 1.5 title 'bn · init=large lr=0.01', \
     'test-accuracy-per-epoch.dat' index 14 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 8 linewidth 1.5 title 'bn · init=large lr=0.1', \
     'test-accuracy-per-epoch.dat' index 15 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 9 linewidth 1.5 title 'none · init=zeros lr=0.01', \
     'test-accuracy-per-epoch.dat' index 16 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 9 linewidth 1.5 title 'bn · init=zeros lr=0.01', \
     'test-accuracy-per-epoch.dat' index 17 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 10 linewidth 1.5 title 'none · init=zeros lr=0.1', \
     'test-accuracy-per-epoch.dat' index 18 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 10 linewidth 1.5 title 'bn · init=zeros lr=0.1', \
     'test-accuracy-per-epoch.dat' index 19 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 11 linewidth 1.5 title 'none · init=constant:10 lr=0.01', \
     'test-accuracy-per-epoch.dat' index 20 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 11 linewidth 1.5 title 'bn · init=constant:10 lr=0.01', \
     'test-accuracy-per-epoch.dat' index 21 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 1 linecolor 12 linewidth 1.5 title 'none · init=constant:10 lr=0.1', \
     'test-accuracy-per-epoch.dat' index 22 using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype 2 linecolor 12 linewidth 1.5 title 'bn · init=constant:10 lr=0.1'
