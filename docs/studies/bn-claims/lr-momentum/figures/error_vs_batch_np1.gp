# Drawn by syncbn-study report; rerun with: gnuplot error_vs_batch_np1.gp
set terminal pngcairo size 900,560 noenhanced
set output 'error_vs_batch_np1.png'
set title 'test error vs batch/rank, 1 ranks'
set key outside right top
set grid
set logscale x 2
set xlabel 'batch/rank'
set ylabel 'test error (%)'
set offsets graph 0.05, graph 0.05, 0, 0
plot 'error_vs_batch_np1.dat' index 0 using 1:2:3 with yerrorlines pointtype 7 title 'none · lr=0.001', \
     'error_vs_batch_np1.dat' index 1 using 1:2:3 with yerrorlines pointtype 7 title 'bn · lr=0.001', \
     'error_vs_batch_np1.dat' index 2 using 1:2:3 with yerrorlines pointtype 7 title 'none · lr=0.01', \
     'error_vs_batch_np1.dat' index 3 using 1:2:3 with yerrorlines pointtype 7 title 'bn · lr=0.01', \
     'error_vs_batch_np1.dat' index 4 using 1:2:3 with yerrorlines pointtype 7 title 'none · lr=0.1', \
     'error_vs_batch_np1.dat' index 5 using 1:2:3 with yerrorlines pointtype 7 title 'bn · lr=0.1', \
     'error_vs_batch_np1.dat' index 6 using 1:2:3 with yerrorlines pointtype 7 title 'bn · lr=1.0'
