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
plot 'error_vs_batch_np1.dat' index 0 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=kaiming lr=0.01', \
     'error_vs_batch_np1.dat' index 1 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=kaiming lr=0.01', \
     'error_vs_batch_np1.dat' index 2 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=kaiming lr=0.1', \
     'error_vs_batch_np1.dat' index 3 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=kaiming lr=0.1', \
     'error_vs_batch_np1.dat' index 4 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=xavier lr=0.01', \
     'error_vs_batch_np1.dat' index 5 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=xavier lr=0.01', \
     'error_vs_batch_np1.dat' index 6 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=xavier lr=0.1', \
     'error_vs_batch_np1.dat' index 7 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=xavier lr=0.1', \
     'error_vs_batch_np1.dat' index 8 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=small lr=0.01', \
     'error_vs_batch_np1.dat' index 9 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=small lr=0.01', \
     'error_vs_batch_np1.dat' index 10 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=small lr=0.1', \
     'error_vs_batch_np1.dat' index 11 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=small lr=0.1', \
     'error_vs_batch_np1.dat' index 12 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=large lr=0.01', \
     'error_vs_batch_np1.dat' index 13 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=large lr=0.01', \
     'error_vs_batch_np1.dat' index 14 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=large lr=0.1', \
     'error_vs_batch_np1.dat' index 15 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=zeros lr=0.01', \
     'error_vs_batch_np1.dat' index 16 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=zeros lr=0.01', \
     'error_vs_batch_np1.dat' index 17 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=zeros lr=0.1', \
     'error_vs_batch_np1.dat' index 18 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=zeros lr=0.1', \
     'error_vs_batch_np1.dat' index 19 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=constant:10 lr=0.01', \
     'error_vs_batch_np1.dat' index 20 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=constant:10 lr=0.01', \
     'error_vs_batch_np1.dat' index 21 using 1:2:3 with yerrorlines pointtype 7 title 'none · init=constant:10 lr=0.1', \
     'error_vs_batch_np1.dat' index 22 using 1:2:3 with yerrorlines pointtype 7 title 'bn · init=constant:10 lr=0.1'
